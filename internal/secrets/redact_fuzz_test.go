package secrets

import (
	"strings"
	"testing"
)

// FuzzRedact: whatever the values and the text around them, no value of
// MinRedactLen bytes or more is left whole in what Redact returns, and
// text with no value in it comes back unchanged.
func FuzzRedact(f *testing.F) {
	f.Add("s3cr3t=with equals and spaces", "tok_9f8e7d6c5b4a", "DB_PASSWORD=", "\nPORT=5432")
	f.Add("aaaaaa", "aaaaaaa", "a", "aaaa")
	f.Add("first line\nsecond line", "second", "out: ", "...")
	f.Add("abcabcabc", "bcabca", "abc", "abcab")
	f.Fuzz(func(t *testing.T, v1, v2, prefix, suffix string) {
		r := NewRedactor()
		r.Add("a", v1)
		r.Add("b", v2)
		text := prefix + v1 + suffix + v2 + prefix
		got := r.Redact(text)
		for _, v := range []string{v1, v2} {
			if len(v) >= MinRedactLen && !strings.Contains(Redacted, v) && strings.Contains(got, v) {
				t.Fatalf("Redact(%q) = %q still holds %q", text, got, v)
			}
		}
		plain := strings.NewReplacer("a", "", "b", "").Replace(prefix)
		if r.Redact(plain) != plain && !containsForm(plain, v1, v2) {
			t.Fatalf("Redact changed %q, which holds no value: %q", plain, r.Redact(plain))
		}
	})
}

// containsForm says whether text holds a form of one of values, or a cut
// prefix of one before "...".
func containsForm(text string, values ...string) bool {
	for _, v := range values {
		for _, f := range forms(v) {
			if strings.Contains(text, f) || (strings.Contains(text, "...") && prefixAtEnd(text[:strings.LastIndex(text, "...")], f) >= MinRedactLen) {
				return true
			}
		}
	}
	return false
}

// FuzzPrefixAtEnd: the one-pass search agrees with trying every length.
func FuzzPrefixAtEnd(f *testing.F) {
	f.Add("xx abcab", "abcabd")
	f.Add("aaaa", "aaa")
	f.Add("", "abc")
	f.Fuzz(func(t *testing.T, s, p string) {
		want := 0
		for n := min(len(s), len(p)); n > 0; n-- {
			if strings.HasSuffix(s, p[:n]) {
				want = n
				break
			}
		}
		if got := prefixAtEnd(s, p); got != want {
			t.Fatalf("prefixAtEnd(%q, %q) = %d, want %d", s, p, got, want)
		}
	})
}
