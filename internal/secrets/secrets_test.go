package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"go.yaml.in/yaml/v3"
)

const (
	recipientTest   = "age1j9rs0kwrmtzt9chzj2mmet4e7jvzjsrqez0xl5wkye3fccxx6guq8xlsyn"
	recipientSecond = "age1zg4zwkp3e96sxj8km3a3m6pf634drlletw98hznnz70l7v8n4s2sh9p2ht"
)

// fixture is an encrypted file in testdata made by the real sops, with the
// original it was made from.
type fixture struct {
	name  string // the encrypted file
	plain string // its plaintext original
	ids   string // which identities decrypt it: "test", "second" or "both"
}

var fixtures = []fixture{
	{"app.env", "app.plain.env", "test"},
	{"app.yaml", "app.plain.yaml", "test"},
	{"config.json", "config.plain.json", "test"},
	{"two.yaml", "two.plain.yaml", "second"},
	{"maconly.yaml", "maconly.plain.yaml", "test"},
	{"regex.yaml", "regex.plain.yaml", "test"},
	{"multi.yaml", "multi.plain.yaml", "test"},
	{"comments.yaml", "comments.plain.yaml", "test"},
	{"ucomments.yaml", "ucomments.plain.yaml", "test"},
	{"suffix.json", "suffix.plain.json", "test"},
	{"uregex.env", "uregex.plain.env", "test"},
	{"shamir.yaml", "shamir.plain.yaml", "both"},
	{"shamir.env", "shamir.plain.env", "both"},
}

func TestFormatOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Format
		ok   bool
	}{
		{".env", Dotenv, true},
		{"prod.env", Dotenv, true},
		{"stack/secrets.env", Dotenv, true},
		{"values.yaml", YAML, true},
		{"values.yml", YAML, true},
		{"config.json", JSON, true},
		{".env.local", "", false},
		{"secret.bin", "", false},
		{"envfile", "", false},
		{"VALUES.YAML", "", false}, // sops matches suffixes case-sensitively
	} {
		got, ok := FormatOf(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("FormatOf(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestDecryptMatchesSops decrypts every fixture and checks the result both
// against what "sops decrypt" printed, byte for byte, and against the
// original the file was made from, value for value.
func TestDecryptMatchesSops(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			f := mustFormat(t, fx.name)
			got, err := Decrypt(readFixture(t, fx.name), f, identities(t, fx.ids))
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			ext := filepath.Ext(fx.name)
			sopsOut := readFixture(t, strings.TrimSuffix(fx.name, ext)+".sops-decrypted"+ext)
			if !bytes.Equal(got, sopsOut) {
				t.Errorf("output differs from sops decrypt\ngot:\n%s\nsops:\n%s", got, sopsOut)
			}
			plain := readFixture(t, fx.plain)
			switch f {
			case YAML, JSON:
				// JSON is YAML, so one parser compares both, documents and all.
				if g, w := parseDocs(t, got), parseDocs(t, plain); !reflect.DeepEqual(g, w) {
					t.Errorf("decrypted document differs from the original\ngot:  %#v\nwant: %#v", g, w)
				}
			case Dotenv:
				if g, w := string(got), string(plain); g != w {
					t.Errorf("decrypted dotenv differs from the original\ngot:\n%s\nwant:\n%s", g, w)
				}
			}
		})
	}
}

func TestDecryptEnv(t *testing.T) {
	got, err := DecryptEnv(readFixture(t, "app.env"), identities(t, "test"))
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{"DB_HOST", "db.internal"},
		{"DB_PASSWORD", "s3cr3t=with equals and spaces"},
		{"API_TOKEN", "tok_9f8e7d6c5b4a"},
		{"EMPTY", ""},
		{"MULTILINE", "first line\nsecond line\nthird line"},
		{"PORT", "5432"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("DecryptEnv = %q\nwant %q", got, want)
	}
}

func TestDecryptEnvUnencryptedRegex(t *testing.T) {
	got, err := DecryptEnv(readFixture(t, "uregex.env"), identities(t, "test"))
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{"PUBLIC_URL", "https://example.internal"},
		{"LOG_LEVEL", "debug"},
		{"SECRET_KEY", "uregex-secret-key"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("DecryptEnv = %q\nwant %q", got, want)
	}
}

func TestEachRecipientCanDecrypt(t *testing.T) {
	for _, ids := range []string{"test", "second"} {
		got, err := Decrypt(readFixture(t, "two.yaml"), YAML, identities(t, ids))
		if err != nil {
			t.Fatalf("with the %s identity: %v", ids, err)
		}
		if want := "shared_secret: both-recipients-can-read-this\n"; string(got) != want {
			t.Errorf("with the %s identity: got %q, want %q", ids, got, want)
		}
	}
}

func TestWrongIdentity(t *testing.T) {
	stranger, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		ids  []age.Identity
		want string
	}{
		{"app.yaml", []age.Identity{stranger}, "no age identity matches the file's recipients " + recipientTest},
		{"two.yaml", []age.Identity{stranger}, "no age identity matches the file's recipients " + recipientTest + ", " + recipientSecond},
		{"app.env", nil, "no age identity matches the file's recipients " + recipientTest + ": no age identities given"},
		{"config.json", identities(t, "second"), "no age identity matches the file's recipients " + recipientTest},
	} {
		_, err := Decrypt(readFixture(t, tc.file), mustFormat(t, tc.file), tc.ids)
		if !errors.Is(err, ErrNoIdentity) || err.Error() != tc.want {
			t.Errorf("%s: err = %v; want %q", tc.file, err, tc.want)
		}
		assertNoPlaintext(t, err)
	}
}

func TestShamirNeedsEnoughGroups(t *testing.T) {
	_, err := Decrypt(readFixture(t, "shamir.yaml"), YAML, identities(t, "test"))
	if !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("err = %v; want it to wrap ErrNoIdentity", err)
	}
	for _, want := range []string{"split over 2 key groups, 2 needed, 1 decrypted", "key group 2", recipientSecond} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q; want it to contain %q", err, want)
		}
	}
	assertNoPlaintext(t, err)
}

func TestCombineShares(t *testing.T) {
	// Shares of the secret {0x2a, 0x00, 0xff} on the polynomials
	// s + 7x (byte 0), s + 0x53x (byte 1), s + 1x (byte 2), at x = 1, 2, 3.
	// Worked by hand in GF(2⁸): 7·2 = 0x0e, 7·3 = 0x09, 0x53·2 = 0xa6,
	// 0x53·3 = 0xf5.
	shares := [][]byte{
		{0x2a ^ 0x07, 0x00 ^ 0x53, 0xff ^ 0x01, 1},
		{0x2a ^ 0x0e, 0x00 ^ 0xa6, 0xff ^ 0x02, 2},
		{0x2a ^ 0x09, 0x00 ^ 0xf5, 0xff ^ 0x03, 3},
	}
	for _, pick := range [][]int{{0, 1}, {1, 2}, {0, 2}, {0, 1, 2}} {
		var some [][]byte
		for _, i := range pick {
			some = append(some, shares[i])
		}
		got, err := combineShares(some)
		if err != nil || !bytes.Equal(got, []byte{0x2a, 0x00, 0xff}) {
			t.Errorf("shares %v: got %x, %v; want 2a00ff", pick, got, err)
		}
	}
	if _, err := combineShares([][]byte{shares[0], shares[0]}); err == nil {
		t.Error("duplicate shares: no error")
	}
}

func TestUnencryptedSuffixKeptAsIs(t *testing.T) {
	data := readFixture(t, "app.yaml")
	if !bytes.Contains(data, []byte("api_key_unencrypted: visible-in-git\n")) {
		t.Fatal("fixture: the _unencrypted key should be clear in the encrypted file")
	}
	got, err := Decrypt(data, YAML, identities(t, "test"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte("\napi_key_unencrypted: visible-in-git\n")) {
		t.Errorf("output lacks the _unencrypted key as it was:\n%s", got)
	}
}

func TestPlainFileIsNotSOPS(t *testing.T) {
	for _, name := range []string{"app.plain.env", "app.plain.yaml", "config.plain.json"} {
		data := readFixture(t, name)
		f := mustFormat(t, name)
		if IsEncrypted(data, f) {
			t.Errorf("IsEncrypted(%s) = true", name)
		}
		_, err := Decrypt(data, f, identities(t, "test"))
		if !errors.Is(err, ErrNotSOPS) || err.Error() != "not a SOPS file: no sops metadata" {
			t.Errorf("Decrypt(%s): err = %v; want %q", name, err, "not a SOPS file: no sops metadata")
		}
		assertNoPlaintext(t, err)
	}
}

func TestIsEncrypted(t *testing.T) {
	for _, fx := range fixtures {
		if !IsEncrypted(readFixture(t, fx.name), mustFormat(t, fx.name)) {
			t.Errorf("IsEncrypted(%s) = false", fx.name)
		}
	}
	for _, tc := range []struct {
		name string
		data []byte
		f    Format
	}{
		{"YAML read as JSON", readFixture(t, "app.yaml"), JSON},
		{"empty", nil, YAML},
		{"garbage", []byte("\x00\x01{[: not anything"), YAML},
		{"sops key without mac", []byte("a: 1\nsops:\n    version: 3.13.3\n"), YAML},
		{"dotenv without mac", []byte("A=1\nsops_version=3.13.3\n"), Dotenv},
	} {
		if IsEncrypted(tc.data, tc.f) {
			t.Errorf("IsEncrypted(%s) = true", tc.name)
		}
	}
}

func TestTooLarge(t *testing.T) {
	data := readFixture(t, "app.yaml")
	big := append(bytes.Repeat([]byte("# padding\n"), MaxFileSize/10+1), data...)
	_, err := Decrypt(big, YAML, identities(t, "test"))
	if err == nil || !strings.Contains(err.Error(), "more than the 4194304 allowed") {
		t.Errorf("err = %v; want a size error", err)
	}
	// Too large to parse, but plainly SOPS: say so, so that a caller does
	// not deploy it as a clear file.
	if !IsEncrypted(big, YAML) {
		t.Error("IsEncrypted(large SOPS file) = false")
	}
	if IsEncrypted(bytes.Repeat([]byte("a: b\n"), MaxFileSize/5+1), YAML) {
		t.Error("IsEncrypted(large clear file) = true")
	}
}

func TestOnlyKMSIsUnsupported(t *testing.T) {
	data := `password: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
sops:
    kms:
        - arn: arn:aws:kms:eu-west-1:000000000000:key/00000000-0000-0000-0000-000000000000
          created_at: "2024-01-01T00:00:00Z"
          enc: AQICAHh
    pgp:
        - created_at: "2024-01-01T00:00:00Z"
          enc: pgp-message
          fp: 0000000000000000000000000000000000000000
    lastmodified: "2024-01-01T00:00:00Z"
    mac: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]
    version: 3.13.3
`
	_, err := Decrypt([]byte(data), YAML, identities(t, "test"))
	want := "unsupported: this file's data key is only encrypted for kms, pgp; gitopsd decrypts age only"
	if !errors.Is(err, ErrUnsupported) || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
}

// A value whose plaintext does not parse as its recorded type must not be
// quoted in the error, as strconv would.
func TestBadTypedValueIsNotQuoted(t *testing.T) {
	data := string(readFixture(t, "app.yaml"))
	const secret = "not-a-number-but-a-secret"
	forged := sealValue(t, dataKeyOf(t, data), secret, "database:port:", "int")
	data = replaceOnce(t, data, "    port: "+encValueOf(t, data, "    port: "), "    port: "+forged)
	_, err := Decrypt([]byte(data), YAML, identities(t, "test"))
	if err == nil || !strings.Contains(err.Error(), "key path database:port: decrypt: decrypted value is not a valid int") {
		t.Fatalf("err = %v; want a type error for database:port", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error quotes the plaintext: %v", err)
	}
}

func TestHostileYAML(t *testing.T) {
	// Each level doubles the tree: 2^40 nodes once aliases are expanded.
	var bomb strings.Builder
	bomb.WriteString("l0: &l0 [x, x]\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&bomb, "l%d: &l%d [*l%d, *l%d]\n", i, i, i-1, i-1)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"alias bomb", bomb.String(), "too large once its aliases are expanded"},
		{"alias to itself", "a: &x [1, *x]\n", "nested deeper than 256"},
		{"deep lists", "a: " + strings.Repeat("[", 1000) + strings.Repeat("]", 1000), "nested deeper than 256"},
		{"deep mappings", "a: " + strings.Repeat("{a: ", 300) + "1" + strings.Repeat("}", 300), "nested deeper than 256"},
		{"list document", "- a\n- b\n", "a document that is a list is not supported"},
		{"non-string key", "1: a\n", "key is not a string"},
		{"duplicate key", "a: 1\na: 2\n", `duplicate key "a"`},
	} {
		_, err := Decrypt([]byte(tc.data), YAML, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestHostileJSON(t *testing.T) {
	deep := `{"a": ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}"
	_, err := Decrypt([]byte(deep), JSON, nil)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Errorf("err = %v; want a nesting error", err)
	}
}

func TestLoadIdentities(t *testing.T) {
	ids, err := LoadIdentities("testdata/test.agekey")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("got %d identities, want 1", len(ids))
	}
	x, ok := ids[0].(*age.X25519Identity)
	if !ok || x.Recipient().String() != recipientTest {
		t.Errorf("identity %T is not the one for %s", ids[0], recipientTest)
	}

	if _, err := LoadIdentities(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.agekey")
	if err := os.WriteFile(bad, []byte("# comment\nAGE-SECRET-KEY-1SECRETBUTBROKEN\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadIdentities(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "SECRETBUTBROKEN") {
		t.Errorf("broken key: err = %v; want the path named and the key not quoted", err)
	}
}

// identities loads the test identities: "test", "second" or "both".
func identities(t testing.TB, which string) []age.Identity {
	t.Helper()
	var ids []age.Identity
	for _, name := range []string{"test", "second"} {
		if which == name || which == "both" {
			some, err := LoadIdentities(filepath.Join("testdata", name+".agekey"))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, some...)
		}
	}
	return ids
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustFormat(t testing.TB, name string) Format {
	t.Helper()
	f, ok := FormatOf(name)
	if !ok {
		t.Fatalf("no format for %s", name)
	}
	return f
}

// parseDocs parses every document of a YAML (or JSON) stream.
func parseDocs(t *testing.T, data []byte) []any {
	t.Helper()
	var docs []any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		docs = append(docs, v)
	}
}

// plaintexts are the values and comments of the plaintext fixtures, the
// strings no error may contain. Short ones are left out: "true" or "ci"
// occur in ordinary words.
func plaintexts(t *testing.T) []string {
	t.Helper()
	var out []string
	add := func(s string) {
		if s = strings.TrimSpace(s); len(s) >= 6 {
			out = append(out, s)
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			add(v)
		}
	}
	names, err := filepath.Glob("testdata/*.plain.*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no plaintext fixtures: %v", err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if _, c, ok := strings.Cut(line, "#"); ok {
				add(c)
			}
		}
		if strings.HasSuffix(name, ".env") {
			for _, line := range strings.Split(string(data), "\n") {
				if _, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
					add(strings.ReplaceAll(v, `\n`, "\n"))
				}
			}
			continue
		}
		for _, doc := range parseDocs(t, data) {
			walk(doc)
		}
	}
	return out
}

func assertNoPlaintext(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, p := range plaintexts(t) {
		if strings.Contains(err.Error(), p) {
			t.Errorf("error contains plaintext %q: %v", p, err)
		}
	}
}
