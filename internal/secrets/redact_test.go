package secrets

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	r := NewRedactor()
	r.Add("db", "s3cr3t=with equals and spaces", "5432", "first line\nsecond line\nthird line", `quo"ted\pass`)
	r.Add("api", "tok_9f8e7d6c5b4a", "tok_9f8e7d6c5b4a-longer")
	for _, tc := range []struct{ name, in, want string }{
		{"as is", "DB_PASSWORD=s3cr3t=with equals and spaces\n", "DB_PASSWORD=[redacted]\n"},
		{"two stacks' values in one text", "a tok_9f8e7d6c5b4a b s3cr3t=with equals and spaces", "a [redacted] b [redacted]"},
		{"a value inside a longer one is redacted whole", "x tok_9f8e7d6c5b4a-longer y", "x [redacted] y"},
		{"shorter than MinRedactLen stays", "PORT=5432", "PORT=5432"},
		{"a line of a multi-line value", "printed: second line only", "printed: [redacted] only"},
		{"whitespace collapsed, as a probe's output is recorded", "out: first line second line third line", "out: [redacted]"},
		{"JSON-escaped", `{"v":"quo\"ted\\pass"}`, `{"v":"[redacted]"}`},
		{"cut short by ...", "probe exit 1: DB_PASSWORD=s3cr3t=with equ...", "probe exit 1: DB_PASSWORD=[redacted]..."},
		{"a short prefix before ... stays", "value s3cr3...", "value s3cr3..."},
		{"nothing to redact", "all is well", "all is well"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Redact(tc.in); got != tc.want {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	var none *Redactor
	if got := none.Redact("tok_9f8e7d6c5b4a"); got != "tok_9f8e7d6c5b4a" {
		t.Fatalf("a nil Redactor changed text: %q", got)
	}
	none.Add("x", "ignored-value") // no panic
}

// TestRedactingHandler: the message, string, error, Stringer and grouped
// attributes, and those bound with With before the value was known, are
// all redacted in what the wrapped handler writes.
func TestRedactingHandler(t *testing.T) {
	r := NewRedactor()
	var buf bytes.Buffer
	log := slog.New(r.Handler(slog.NewJSONHandler(&buf, nil)))
	bound := log.With("bound", "early tok_9f8e7d6c5b4a").WithGroup("g")
	r.Add("api", "tok_9f8e7d6c5b4a")
	bound.Info("hook said tok_9f8e7d6c5b4a",
		"str", "x tok_9f8e7d6c5b4a",
		"err", errors.New("exited 3: tok_9f8e7d6c5b4a"),
		"any", stringer("tok_9f8e7d6c5b4a"),
		slog.Group("inner", "deep", "tok_9f8e7d6c5b4a"),
		"n", 42)
	out := buf.String()
	if strings.Contains(out, "tok_9f8e7d6c5b4a") {
		t.Fatalf("the log holds the value:\n%s", out)
	}
	for _, want := range []string{`"msg":"hook said [redacted]"`, `"bound":"early [redacted]"`, `"g":{"str":"x [redacted]"`, `"err":"exited 3: [redacted]"`, `"any":"[redacted]"`, `"inner":{"deep":"[redacted]"}`, `"n":42`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestDecryptedValuesAreKnown: the values DecryptDocument and
// DecryptEnvDocument report are the ones that were encrypted, not those a
// file's rule left in cleartext.
func TestDecryptedValuesAreKnown(t *testing.T) {
	ids := identities(t, "test")
	_, env, err := DecryptEnvDocument(readFixture(t, "uregex.env"), ids)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(env, []string{"uregex-secret-key"}) {
		t.Fatalf("uregex.env: encrypted values %q, want only SECRET_KEY's", env)
	}
	_, doc, err := DecryptDocument(readFixture(t, "suffix.json"), JSON, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"suffix-db-secret", "suffix-inner-secret"} {
		if !slices.Contains(doc, want) {
			t.Errorf("suffix.json: encrypted values %q lack %q", doc, want)
		}
	}
	for _, clear := range []string{"suffix-example", "not secret"} {
		if slices.Contains(doc, clear) {
			t.Errorf("suffix.json: the cleartext %q is reported as encrypted", clear)
		}
	}
	_, bin, err := DecryptDocument(readFixture(t, "token.bin"), JSON, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(bin) != 1 || strings.TrimSpace(bin[0]) != "sealed-binary-secret" {
		t.Fatalf("token.bin: encrypted values %q", bin)
	}
}
