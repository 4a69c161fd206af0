package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestTampering edits encrypted files the way an attacker with write access
// to the repository could, and checks every edit is refused.
func TestTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		edit   func(t *testing.T, s string) string
		wantIs error  // if set, errors.Is must hold
		want   string // if set, the error must contain it
	}{
		{
			name: "one value's ciphertext changed",
			file: "app.yaml",
			edit: func(t *testing.T, s string) string { return flipData(t, s, "    password: ") },
			want: "key path database:password: decrypt: ",
		},
		{
			name: "one dotenv value's ciphertext changed",
			file: "app.env",
			edit: func(t *testing.T, s string) string { return flipData(t, s, "DB_PASSWORD=") },
			want: "key path DB_PASSWORD: decrypt: ",
		},
		{
			name: "one JSON value's ciphertext changed",
			file: "config.json",
			edit: func(t *testing.T, s string) string { return flipData(t, s, `"password": "`) },
			want: "key path credentials:password: decrypt: ",
		},
		{
			name: "ciphertext moved to another key",
			file: "app.yaml",
			edit: func(t *testing.T, s string) string {
				return replaceOnce(t, s, "    host: ENC[", "    host: "+encValueOf(t, s, "    password: ")+"\n    ignored: ENC[")
			},
			want: "key path database:host: decrypt: ",
		},
		{
			name:   "MAC changed",
			file:   "app.yaml",
			edit:   func(t *testing.T, s string) string { return flipData(t, s, "    mac: ") },
			wantIs: ErrMACMismatch,
		},
		{
			name:   "dotenv MAC changed",
			file:   "app.env",
			edit:   func(t *testing.T, s string) string { return flipData(t, s, "sops_mac=") },
			wantIs: ErrMACMismatch,
		},
		{
			name: "lastmodified changed",
			file: "app.yaml",
			edit: func(t *testing.T, s string) string {
				return regexp.MustCompile(`lastmodified: "\d{4}`).ReplaceAllString(s, `lastmodified: "1999`)
			},
			wantIs: ErrMACMismatch,
		},
		{
			name:   "unencrypted value changed",
			file:   "app.yaml",
			edit:   func(t *testing.T, s string) string { return replaceOnce(t, s, "visible-in-git", "changed-in-git") },
			wantIs: ErrMACMismatch,
		},
		{
			name:   "value left clear by the regex changed",
			file:   "regex.yaml",
			edit:   func(t *testing.T, s string) string { return replaceOnce(t, s, "user: app", "user: root") },
			wantIs: ErrMACMismatch,
		},
		{
			name: "two lines swapped",
			file: "app.env",
			edit: func(t *testing.T, s string) string {
				lines := strings.Split(s, "\n")
				lines[1], lines[3] = lines[3], lines[1] // DB_HOST and API_TOKEN
				return strings.Join(lines, "\n")
			},
			wantIs: ErrMACMismatch,
		},
		{
			name: "a value deleted",
			file: "app.env",
			edit: func(t *testing.T, s string) string {
				return regexp.MustCompile(`(?m)^PORT=.*\n`).ReplaceAllString(s, "")
			},
			wantIs: ErrMACMismatch,
		},
		{
			name:   "mac_only_encrypted removed",
			file:   "maconly.yaml",
			edit:   func(t *testing.T, s string) string { return replaceOnce(t, s, "    mac_only_encrypted: true\n", "") },
			wantIs: ErrMACMismatch,
		},
		{
			name: "comment that marks a value as encrypted removed",
			file: "comments.yaml",
			edit: func(t *testing.T, s string) string { return replaceOnce(t, s, "# sops:enc\napi:", "api:") },
			// api's ciphertext is now taken for a clear value, which changes the MAC.
			wantIs: ErrMACMismatch,
		},
		{
			name: "clear value added where values are encrypted",
			file: "app.yaml",
			edit: func(t *testing.T, s string) string {
				return "added_later: plaintext-added-after-encryption\n" + s
			},
			want: "key path added_later: decrypt: value is not of the form ENC[",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := readFixture(t, tc.file)
			edited := tc.edit(t, string(data))
			if edited == string(data) {
				t.Fatal("the edit changed nothing")
			}
			_, err := Decrypt([]byte(edited), mustFormat(t, tc.file), identities(t, "test"))
			switch {
			case err == nil:
				t.Fatal("Decrypt accepted the edited file")
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Errorf("err = %v; want it to wrap %v", err, tc.wantIs)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("err = %v; want it to contain %q", err, tc.want)
			}
			assertNoPlaintext(t, err)
			if strings.Contains(err.Error(), "plaintext-added-after-encryption") {
				t.Errorf("error quotes the clear value: %v", err)
			}
		})
	}
}

// With mac_only_encrypted the MAC covers only encrypted values: editing a
// clear one is allowed, as sops allows it.
func TestMACOnlyEncryptedIgnoresClearValues(t *testing.T) {
	data := replaceOnce(t, string(readFixture(t, "maconly.yaml")), "replicas_unencrypted: 3", "replicas_unencrypted: 4")
	got, err := Decrypt([]byte(data), YAML, identities(t, "test"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "password: mac-only-password\nreplicas_unencrypted: 4\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// encValueOf returns the ENC[...] value on the line that starts with prefix.
func encValueOf(t *testing.T, s, prefix string) string {
	t.Helper()
	i := strings.Index(s, prefix+"ENC[")
	if i < 0 {
		t.Fatalf("no %q followed by an encrypted value", prefix)
	}
	v := s[i+len(prefix):]
	return v[:strings.Index(v, "]")+1]
}

// flipData changes the first ciphertext byte of the value after prefix.
func flipData(t *testing.T, s, prefix string) string {
	t.Helper()
	marker := prefix + "ENC[AES256_GCM,data:"
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("no %q in the file", marker)
	}
	at := i + len(marker)
	flipped := byte('A')
	if s[at] == 'A' {
		flipped = 'B'
	}
	return s[:at] + string(flipped) + s[at+1:]
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("%q occurs %d times, want once", old, strings.Count(s, old))
	}
	return strings.Replace(s, old, new, 1)
}

// dataKeyOf recovers a YAML fixture's data key, so a test can forge values
// only a key holder could.
func dataKeyOf(t *testing.T, data string) []byte {
	t.Helper()
	branches, err := loadYAML([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := extractMetadata(branches, YAML)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := decodeMetadata(raw)
	if err != nil {
		t.Fatal(err)
	}
	key, err := meta.dataKey(identities(t, "test"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// sealValue encrypts plaintext as sops writes a value.
func sealValue(t *testing.T, key []byte, plaintext, aad, typ string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, 32)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 32)
	rand.Read(iv)
	sealed := gcm.Seal(nil, iv, []byte(plaintext), []byte(aad))
	data, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("ENC[AES256_GCM,data:%s,iv:%s,tag:%s,type:%s]", b64(data), b64(iv), b64(tag), typ)
}
