package source

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// signedCommit makes a commit in a new repository, signed with key (or
// unsigned if key is nil) by the real git, and reads it back with go-git.
func signedCommit(t *testing.T, key *testenv.SigningKey) (*git.Repository, *object.Commit) {
	t.Helper()
	r := testenv.NewGitRepo(t)
	files := map[string]string{"app/compose.yaml": "services: {}\n"}
	var sha string
	if key == nil {
		sha = r.Commit(t, "add app", files)
	} else {
		sha = r.CommitSigned(t, key, "add app", files)
	}
	repo, err := git.PlainOpen(r.Bare)
	if err != nil {
		t.Fatalf("open %s: %v", r.Bare, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatalf("read commit %s: %v", sha, err)
	}
	return repo, c
}

// writeFile writes content to a new file in a temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sshSigners trusts the allowed_signers lines.
func sshSigners(t *testing.T, lines ...string) *Signers {
	t.Helper()
	s, err := LoadSigners(writeFile(t, "allowed_signers", strings.Join(lines, "\n")+"\n"), "")
	if err != nil {
		t.Fatalf("LoadSigners: %v", err)
	}
	return s
}

// pgpSigners trusts the OpenPGP keys.
func pgpSigners(t *testing.T, keys ...*testenv.SigningKey) *Signers {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyring.asc")
	testenv.WriteKeyring(t, p, keys...)
	s, err := LoadSigners("", p)
	if err != nil {
		t.Fatalf("LoadSigners: %v", err)
	}
	return s
}

// wantUntrusted fails unless err is ErrUntrusted (and not ErrUnsigned)
// with a message containing every part.
func wantUntrusted(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrUntrusted) || errors.Is(err, ErrUnsigned) {
		t.Fatalf("error = %v, want ErrUntrusted", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is not one line", err)
	}
}

// storeAltered stores a copy of c changed by alter, keeping c's signature,
// as someone rewriting history without the key would, and reads it back.
func storeAltered(t *testing.T, repo *git.Repository, c *object.Commit, alter func(*object.Commit)) *object.Commit {
	t.Helper()
	forged := *c
	alter(&forged)
	obj := repo.Storer.NewEncodedObject()
	if err := forged.Encode(obj); err != nil {
		t.Fatalf("encode altered commit: %v", err)
	}
	h, err := repo.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatalf("store altered commit: %v", err)
	}
	if h == c.Hash {
		t.Fatal("altered commit has the original's hash")
	}
	out, err := repo.CommitObject(h)
	if err != nil {
		t.Fatalf("read altered commit: %v", err)
	}
	if out.PGPSignature != forged.PGPSignature {
		t.Fatal("altered commit lost its signature")
	}
	return out
}

func TestVerifySSHAllowedKey(t *testing.T) {
	t.Parallel()
	key := testenv.NewSSHKey(t)
	_, c := signedCommit(t, key)
	s := sshSigners(t, "# deploy keys", key.AllowedSignersLine("alice@example.com,ops@example.com"))

	got, err := s.VerifyCommit(c)
	if err != nil {
		t.Fatalf("VerifyCommit: %v", err)
	}
	want := Signature{Kind: KindSSH, Signer: "alice@example.com,ops@example.com", Fingerprint: key.Fingerprint}
	if got != want {
		t.Errorf("VerifyCommit = %+v, want %+v", got, want)
	}
}

func TestVerifyUnsigned(t *testing.T) {
	t.Parallel()
	key := testenv.NewSSHKey(t)
	_, c := signedCommit(t, nil)
	_, err := sshSigners(t, key.AllowedSignersLine(testenv.TestEmail)).VerifyCommit(c)
	if !errors.Is(err, ErrUnsigned) || errors.Is(err, ErrUntrusted) {
		t.Fatalf("error = %v, want ErrUnsigned", err)
	}
	if !strings.Contains(err.Error(), c.Hash.String()[:12]) {
		t.Errorf("error %q does not name the commit", err)
	}
}

func TestVerifySSHUnknownKey(t *testing.T) {
	t.Parallel()
	allowed, other := testenv.NewSSHKey(t), testenv.NewSSHKey(t)
	_, c := signedCommit(t, other)
	s := sshSigners(t, allowed.AllowedSignersLine(testenv.TestEmail))

	_, err := s.VerifyCommit(c)
	wantUntrusted(t, err, other.Fingerprint, "not in allowed_signers", c.Hash.String()[:12])
}

// TestVerifySSHOptions checks the allowed_signers options that limit a
// listed key, against one commit dated now.
func TestVerifySSHOptions(t *testing.T) {
	t.Parallel()
	key := testenv.NewSSHKey(t)
	_, c := signedCommit(t, key)
	line := func(opts ...string) string { return key.AllowedSignersLine(testenv.TestEmail, opts...) }

	for _, tc := range []struct {
		name  string
		lines []string
		why   string // "" if the commit is trusted
	}{
		{"git namespace", []string{line(`namespaces="git"`)}, ""},
		{"namespace list", []string{line(`namespaces="file,git"`)}, ""},
		{"namespace pattern", []string{line(`namespaces="g*"`)}, ""},
		{"file namespace only", []string{line(`namespaces="file"`)}, `namespaces="file"`},
		{"negated namespace", []string{line(`namespaces="*,!git"`)}, "namespaces"},
		{"unquoted option value", []string{line(`namespaces=file`)}, "namespaces"},
		{"valid window", []string{line(`valid-after="20000101"`, `valid-before="29991231235959Z"`)}, ""},
		{"valid-before past", []string{line(`valid-before="20200101"`)}, `valid-before="20200101"`},
		{"valid-after future", []string{line(`valid-after="29990101Z"`)}, `valid-after="29990101Z"`},
		{"options are case-insensitive", []string{line(`VALID-BEFORE="20200101"`)}, "valid-before"},
		{"one of two lines allows it", []string{line(`valid-before="20200101"`), line()}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sshSigners(t, tc.lines...).VerifyCommit(c)
			if tc.why == "" {
				if err != nil || got.Fingerprint != key.Fingerprint {
					t.Fatalf("VerifyCommit = %+v, %v; want trusted", got, err)
				}
				return
			}
			wantUntrusted(t, err, key.Fingerprint, tc.why, "line 1")
		})
	}
}

// TestVerifySSHNamespace checks that a signature the same key made for
// another purpose (ssh-keygen -Y sign -n file) does not pass for a commit.
func TestVerifySSHNamespace(t *testing.T) {
	t.Parallel()
	key := testenv.NewSSHKey(t)
	repo, c := signedCommit(t, key)
	payload, err := signedPayload(c)
	if err != nil {
		t.Fatal(err)
	}
	s := sshSigners(t, key.AllowedSignersLine(testenv.TestEmail))

	// Control: ed25519 signatures are deterministic, so ssh-keygen signing
	// the payload in namespace git must reproduce git's own signature:
	// the payload is what git signed, and only the namespace differs below.
	if sig := key.SSHSign(t, "git", payload); strings.TrimSpace(sig) != strings.TrimSpace(c.PGPSignature) {
		t.Fatalf("ssh-keygen -n git over the payload:\n%s\ngit's signature:\n%s", sig, c.PGPSignature)
	}

	other := storeAltered(t, repo, c, func(f *object.Commit) { f.PGPSignature = key.SSHSign(t, "file", payload) })
	_, err = s.VerifyCommit(other)
	wantUntrusted(t, err, key.Fingerprint, `namespace "file"`)
}

func TestVerifyOpenPGPKeyInKeyring(t *testing.T) {
	t.Parallel()
	other, key := testenv.NewOpenPGPKey(t), testenv.NewOpenPGPKey(t)
	_, c := signedCommit(t, key)
	// key is the second block of the file: every block must be read.
	s := pgpSigners(t, other, key)

	got, err := s.VerifyCommit(c)
	if err != nil {
		t.Fatalf("VerifyCommit: %v", err)
	}
	want := Signature{Kind: KindOpenPGP, Signer: testenv.TestIdentity, Fingerprint: key.Fingerprint}
	if got != want {
		t.Errorf("VerifyCommit = %+v, want %+v", got, want)
	}
}

func TestVerifyOpenPGPUnknownKey(t *testing.T) {
	t.Parallel()
	allowed, other := testenv.NewOpenPGPKey(t), testenv.NewOpenPGPKey(t)
	_, c := signedCommit(t, other)

	_, err := pgpSigners(t, allowed).VerifyCommit(c)
	wantUntrusted(t, err, other.Fingerprint, "not in keyring")
}

func TestVerifyOpenPGPRevokedKey(t *testing.T) {
	t.Parallel()
	key := testenv.NewOpenPGPKey(t)
	_, c := signedCommit(t, key)
	key.Revoke(t)

	_, err := pgpSigners(t, key).VerifyCommit(c)
	wantUntrusted(t, err, key.Fingerprint, "revoked")
}

func TestVerifyOpenPGPExpiredKey(t *testing.T) {
	t.Parallel()
	key := testenv.NewOpenPGPKey(t)
	_, c := signedCommit(t, key)
	key.GPG(t, "--quick-set-expire", key.Fingerprint, "1d")
	s := pgpSigners(t, key)

	if _, err := s.VerifyCommit(c); err != nil {
		t.Fatalf("VerifyCommit before the key expires: %v", err)
	}
	s.now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	_, err := s.VerifyCommit(c)
	wantUntrusted(t, err, key.Fingerprint, "expired")
}

// TestVerifyWrongKind checks that a key kind without configured keys is
// refused, not skipped.
func TestVerifyWrongKind(t *testing.T) {
	t.Parallel()
	sshKey, pgpKey := testenv.NewSSHKey(t), testenv.NewOpenPGPKey(t)
	_, sshCommit := signedCommit(t, sshKey)
	_, pgpCommit := signedCommit(t, pgpKey)

	_, err := pgpSigners(t, pgpKey).VerifyCommit(sshCommit)
	wantUntrusted(t, err, sshKey.Fingerprint, "no allowed_signers")
	_, err = sshSigners(t, sshKey.AllowedSignersLine(testenv.TestEmail)).VerifyCommit(pgpCommit)
	wantUntrusted(t, err, pgpKey.Fingerprint, "no OpenPGP keyring")
}

// TestVerifyAlteredCommit stores signed commits changed after signing,
// their signature kept, and expects them refused.
func TestVerifyAlteredCommit(t *testing.T) {
	t.Parallel()
	sshKey, pgpKey := testenv.NewSSHKey(t), testenv.NewOpenPGPKey(t)
	allowed := writeFile(t, "allowed_signers", sshKey.AllowedSignersLine(testenv.TestEmail)+"\n")
	keyring := writeFile(t, "keyring.asc", pgpKey.ArmoredPublicKey())
	s, err := LoadSigners(allowed, keyring)
	if err != nil {
		t.Fatal(err)
	}

	for _, key := range []*testenv.SigningKey{sshKey, pgpKey} {
		t.Run(key.Kind, func(t *testing.T) {
			repo, c := signedCommit(t, key)
			if _, err := s.VerifyCommit(c); err != nil {
				t.Fatalf("VerifyCommit of the original: %v", err)
			}
			for name, alter := range map[string]func(*object.Commit){
				"message": func(f *object.Commit) { f.Message = "add app\n\nand a backdoor\n" },
				"tree":    func(f *object.Commit) { f.TreeHash = plumbing.NewHash(strings.Repeat("1", 40)) },
				"author":  func(f *object.Commit) { f.Author.Name = "someone else" },
			} {
				_, err := s.VerifyCommit(storeAltered(t, repo, c, alter))
				if err == nil {
					t.Errorf("%s altered: VerifyCommit succeeded", name)
					continue
				}
				wantUntrusted(t, err, key.Fingerprint, "does not verify")
			}
		})
	}
}

// TestVerifyHostileSignature feeds signatures no git would write; each
// must be refused as untrusted, not panic or pass as unsigned.
func TestVerifyHostileSignature(t *testing.T) {
	t.Parallel()
	sshKey, pgpKey := testenv.NewSSHKey(t), testenv.NewOpenPGPKey(t)
	_, sshCommit := signedCommit(t, sshKey)
	_, pgpCommit := signedCommit(t, pgpKey)
	allowed := writeFile(t, "allowed_signers", sshKey.AllowedSignersLine(testenv.TestEmail)+"\n")
	s, err := LoadSigners(allowed, writeFile(t, "keyring.asc", pgpKey.ArmoredPublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	sshSig, pgpSig := sshCommit.PGPSignature, pgpCommit.PGPSignature

	for name, sig := range map[string]string{
		"garbage":              "hello",
		"ssh truncated":        sshSig[:len(sshSig)/2],
		"ssh no base64":        sshSigBegin + "\n!!!!\n" + sshSigEnd,
		"ssh empty":            sshSigBegin + "\n" + sshSigEnd,
		"ssh not sshsig":       sshSigBegin + "\naGVsbG8gd29ybGQ=\n" + sshSigEnd,
		"ssh twice":            sshSig + sshSig,
		"ssh huge":             sshSigBegin + "\n" + strings.Repeat("QUFB", 1<<20) + "\n" + sshSigEnd,
		"pgp truncated":        pgpSig[:len(pgpSig)/2],
		"pgp bad checksum":     strings.Replace(pgpSig, "\n=", "\n=AAAA", 1),
		"pgp empty":            "-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
		"pgp and ssh":          pgpSig + sshSig,
		"x509":                 "-----BEGIN SIGNED MESSAGE-----\nMIAG\n-----END SIGNED MESSAGE-----\n",
		"pgp public key":       pgpKey.ArmoredPublicKey(),
		"ssh signature of pgp": strings.Replace(sshSig, "SSH SIGNATURE", "PGP SIGNATURE", -1),
	} {
		t.Run(name, func(t *testing.T) {
			for _, base := range []*object.Commit{sshCommit, pgpCommit} {
				c := *base
				c.PGPSignature = sig
				got, err := s.VerifyCommit(&c)
				if err == nil {
					t.Fatalf("VerifyCommit = %+v, want an error", got)
				}
				wantUntrusted(t, err)
			}
		})
	}
}

func TestLoadSigners(t *testing.T) {
	t.Parallel()
	sshKey, pgpKey := testenv.NewSSHKey(t), testenv.NewOpenPGPKey(t)
	keyType, keyB64, _ := strings.Cut(sshKey.PublicKey, " ")

	if _, err := LoadSigners("", ""); err == nil {
		t.Error(`LoadSigners("", "") succeeded`)
	}

	for _, tc := range []struct {
		name, file string
		want       string // in the error after the path
	}{
		{"unknown key type", "# keys\n\nalice ssh-foo AAAA\n", `line 3: unknown key type "ssh-foo"`},
		{"cert-authority", "alice cert-authority " + sshKey.PublicKey, "line 1: cert-authority is not supported"},
		{"unknown option", "alice foo=\"bar\" " + sshKey.PublicKey, `line 1: unknown option "foo"`},
		{"bad date", "alice valid-before=\"2024-01-01\" " + sshKey.PublicKey, "line 1: valid-before"},
		{"unterminated quote", "alice namespaces=\"git " + sshKey.PublicKey, "line 1: unterminated quote"},
		{"missing key", sshKey.AllowedSignersLine("a") + "\nbob " + keyType, `line 2: missing key after "ssh-ed25519"`},
		{"principals only", "alice", "line 1: missing key type"},
		{"bad base64", "alice " + keyType + " !!!", "line 1: ssh-ed25519 key is not valid base64"},
		{"type mismatch", "alice ssh-rsa " + keyB64, `line 1: key type "ssh-rsa" does not match`},
		{"certificate", "alice ssh-ed25519-cert-v01@openssh.com " + keyB64, "line 1: key type \"ssh-ed25519-cert-v01@openssh.com\" is a certificate"},
		{"empty principal", "alice,, " + sshKey.PublicKey, "line 1: empty principal"},
		{"no keys", "# nobody yet\n", "no keys listed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "allowed_signers", tc.file)
			_, err := LoadSigners(p, "")
			if err == nil || !strings.Contains(err.Error(), "allowed_signers "+p+": "+tc.want) {
				t.Fatalf("LoadSigners error = %v, want %q after the path", err, tc.want)
			}
		})
	}

	for _, tc := range []struct{ name, file, want string }{
		{"not armored", "mQINBF...", "no armored key block"},
		{"private key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n-----END PGP PRIVATE KEY BLOCK-----\n", "key block 1 is a private key"},
		{"truncated", pgpKey.ArmoredPublicKey()[:200], "key block 1"},
	} {
		t.Run("keyring "+tc.name, func(t *testing.T) {
			p := writeFile(t, "keyring.asc", tc.file)
			_, err := LoadSigners("", p)
			if err == nil || !strings.Contains(err.Error(), "OpenPGP keyring "+p+": "+tc.want) {
				t.Fatalf("LoadSigners error = %v, want %q after the path", err, tc.want)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := LoadSigners(missing, ""); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadSigners(missing file) = %v, want a not-exist error naming it", err)
	}
}

func TestParseAllowedSigners(t *testing.T) {
	t.Parallel()
	key := testenv.NewSSHKey(t)
	file := strings.Join([]string{
		"# comment",
		"",
		`  "alice@example.com,*@ops.example.com" ` + key.PublicKey + " alice's laptop",
		`bob namespaces="git,file",valid-after="20240101",valid-before="203001021530Z"	` + key.PublicKey + "\r",
	}, "\n")
	got, err := parseAllowedSigners([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("parsed %d lines, want 2", len(got))
	}
	if got[0].line != 3 || strings.Join(got[0].principals, " ") != "alice@example.com *@ops.example.com" || got[0].namespaces != nil {
		t.Errorf("line 3 = %+v", got[0])
	}
	after := time.Date(2024, 1, 1, 0, 0, 0, 0, time.Local)
	before := time.Date(2030, 1, 2, 15, 30, 0, 0, time.UTC)
	b := got[1]
	if b.line != 4 || strings.Join(b.namespaces, " ") != "git file" || !b.validAfter.Equal(after) || !b.validBefore.Equal(before) {
		t.Errorf("line 4 = %+v", b)
	}
	if !bytes.Equal(got[0].key, got[1].key) {
		t.Error("the same key parsed differently on two lines")
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		s, p string
		want bool
	}{
		{"git", "git", true},
		{"git", "gi", false},
		{"git", "g*", true},
		{"git", "*", true},
		{"git", "g?t", true},
		{"git", "?", false},
		{"git", "*t*", true},
		{"git", "*x*", false},
		{"", "*", true},
		{strings.Repeat("a", 200), strings.Repeat("*a", 100) + "b", false},
	} {
		if got := matchPattern(tc.s, tc.p); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.s, tc.p, got, tc.want)
		}
	}
	if matchPatternList("git", []string{"*", "!git"}) {
		t.Error("a negated pattern did not exclude git")
	}
}

// FuzzVerifyCommit decodes arbitrary commit objects and verifies them
// against trusted SSH and OpenPGP keys: no input may panic, every failure
// must be ErrUnsigned or ErrUntrusted, and a commit may only pass if it is
// exactly what one of the keys signed.
func FuzzVerifyCommit(f *testing.F) {
	sshKey, pgpKey := testenv.NewSSHKey(f), testenv.NewOpenPGPKey(f)
	dir := f.TempDir()
	allowed := filepath.Join(dir, "allowed_signers")
	keyring := filepath.Join(dir, "keyring.asc")
	testenv.WriteAllowedSigners(f, allowed, sshKey)
	testenv.WriteKeyring(f, keyring, pgpKey)
	s, err := LoadSigners(allowed, keyring)
	if err != nil {
		f.Fatal(err)
	}

	r := testenv.NewGitRepo(f)
	repo := func() *git.Repository {
		repo, err := git.PlainOpen(r.Bare)
		if err != nil {
			f.Fatal(err)
		}
		return repo
	}
	var signed [][]byte // payloads the keys signed
	for _, key := range []*testenv.SigningKey{sshKey, pgpKey} {
		sha := r.CommitSigned(f, key, "signed by "+key.Kind, map[string]string{"f": key.Kind})
		c, err := repo().CommitObject(plumbing.NewHash(sha))
		if err != nil {
			f.Fatal(err)
		}
		payload, err := signedPayload(c)
		if err != nil {
			f.Fatal(err)
		}
		signed = append(signed, payload)
		raw := rawObject(f, repo(), c.Hash)
		if _, err := s.VerifyCommit(decodeCommit(f, raw)); err != nil {
			f.Fatalf("seed signed by %s key: %v", key.Kind, err) // else the fuzzer never reaches a good signature
		}
		f.Add(raw)
	}
	f.Add([]byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----\n\nmsg\n"))
	f.Add([]byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQ==\n -----END PGP SIGNATURE-----\n\nmsg\n"))
	f.Add([]byte("garbage"))

	f.Fuzz(func(t *testing.T, raw []byte) {
		c := decodeCommit(t, raw)
		if c == nil {
			return // not a commit go-git would hand us
		}
		got, err := s.VerifyCommit(c)
		switch {
		case errors.Is(err, ErrUnsigned):
			if strings.TrimSpace(c.PGPSignature) != "" {
				t.Fatalf("signed commit reported unsigned: %v", err)
			}
		case errors.Is(err, ErrUntrusted):
		case err != nil:
			t.Fatalf("error is neither ErrUnsigned nor ErrUntrusted: %v", err)
		default:
			payload, err := signedPayload(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(payload, signed[0]) && !bytes.Equal(payload, signed[1]) {
				t.Fatalf("VerifyCommit = %+v for a payload no key signed:\n%s", got, payload)
			}
			if got.Fingerprint != sshKey.Fingerprint && got.Fingerprint != pgpKey.Fingerprint {
				t.Fatalf("VerifyCommit = %+v, not one of the keys", got)
			}
		}
	})
}

// decodeCommit decodes raw as go-git decodes a stored commit, or returns
// nil if go-git would refuse it.
func decodeCommit(t testing.TB, raw []byte) *object.Commit {
	t.Helper()
	obj := &plumbing.MemoryObject{}
	obj.SetType(plumbing.CommitObject)
	if _, err := obj.Write(raw); err != nil {
		t.Fatal(err)
	}
	c, err := object.DecodeCommit(nil, obj)
	if err != nil {
		return nil
	}
	return c
}

// rawObject is the commit object's bytes as git stored them.
func rawObject(t testing.TB, repo *git.Repository, h plumbing.Hash) []byte {
	t.Helper()
	obj, err := repo.Storer.EncodedObject(plumbing.CommitObject, h)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := obj.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
