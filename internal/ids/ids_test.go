package ids

import "testing"

func TestShort(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"abc":                      "abc",
		"0123456789ab":             "0123456789ab",
		"0123456789abcdef01234567": "0123456789ab",
	} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %q, want %q", in, got, want)
		}
	}
}
