package source

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// Errors of VerifyCommit, for errors.Is. The error's text says why.
var (
	// ErrUnsigned is returned for a commit that carries no signature.
	ErrUnsigned = errors.New("commit is not signed")

	// ErrUntrusted is returned for a commit whose signature gitopsd cannot
	// trust: made by a key it does not know, or by a key not (or no longer)
	// allowed to sign commits, or one that does not verify because the
	// commit was changed after signing or the signature is forged or
	// malformed.
	ErrUntrusted = errors.New("commit signature is not trusted")
)

// Signers is the set of keys a commit must be signed by to be trusted: the
// SSH keys of an allowed_signers file and the keys of an OpenPGP keyring.
//
// An SSH key is trusted under any of the principals it is listed with, as
// git's own `git verify-commit` does: git asks ssh-keygen which principals
// the key has (find-principals) and accepts the commit if it verifies for
// one of them, without comparing them with the committer's e-mail. The
// committer line is written by whoever holds the key, so matching it would
// only add a way to fail, not protection. The principals are reported in
// Signature.Signer for people to read.
//
// An OpenPGP key must be unexpired and unrevoked now, as gpg judges it when
// git verifies; the commit's own date does not count, because whoever
// holds the key writes it.
type Signers struct {
	allowedSignersPath string
	ssh                []allowedSigner

	keyringPath string
	keyring     openpgp.EntityList

	// now is the time OpenPGP keys must be valid (not expired, not
	// revoked) at; time.Now outside tests.
	now func() time.Time
}

// Signature says who signed a commit.
type Signature struct {
	Kind        string // "ssh" or "openpgp"
	Signer      string // the allowed_signers principal(s) that matched, or the OpenPGP key's primary identity (name <email>)
	Fingerprint string // SHA256:... for SSH keys, the hex key fingerprint for OpenPGP
}

// Signature kinds, the values of Signature.Kind.
const (
	KindSSH     = "ssh"
	KindOpenPGP = "openpgp"
)

// maxSignatureSize bounds the signature VerifyCommit will look at. Real
// ones are a few kilobytes even for 16384-bit RSA keys; a commit carrying
// more is hostile, and decoding it would only cost memory.
const maxSignatureSize = 64 << 10

// LoadSigners reads an allowed_signers file (git's
// gpg.ssh.allowedSignersFile format, as ssh-keygen(1) "ALLOWED SIGNERS"
// describes) and/or an armored OpenPGP public keyring; either path may be
// "" but not both. Errors name the file and, for allowed_signers, the line.
//
// allowed_signers lines are `principals [options] keytype base64-key
// [comment]`. Supported options are namespaces="..." (the signature's
// namespace, "git" for commits, must match), valid-after="..." and
// valid-before="..." (YYYYMMDD[HHMM[SS]], local time unless followed by
// "Z" for UTC, as ssh-keygen reads them; compared with the commit's
// committer date, as git does). cert-authority is refused: gitopsd checks
// keys, not certificates.
//
// The keyring file holds one or more armored public key blocks, as
// `gpg --armor --export` writes them.
func LoadSigners(allowedSignersPath, keyringPath string) (*Signers, error) {
	if allowedSignersPath == "" && keyringPath == "" {
		return nil, errors.New("load commit signers: no allowed_signers file and no OpenPGP keyring given")
	}
	s := &Signers{allowedSignersPath: allowedSignersPath, keyringPath: keyringPath, now: time.Now}
	if allowedSignersPath != "" {
		data, err := os.ReadFile(allowedSignersPath)
		if err != nil {
			return nil, fmt.Errorf("read allowed_signers %s: %w", allowedSignersPath, err)
		}
		s.ssh, err = parseAllowedSigners(data)
		if err != nil {
			return nil, fmt.Errorf("allowed_signers %s: %w", allowedSignersPath, err)
		}
		if len(s.ssh) == 0 {
			return nil, fmt.Errorf("allowed_signers %s: no keys listed", allowedSignersPath)
		}
	}
	if keyringPath != "" {
		data, err := os.ReadFile(keyringPath)
		if err != nil {
			return nil, fmt.Errorf("read OpenPGP keyring %s: %w", keyringPath, err)
		}
		s.keyring, err = parseKeyring(data)
		if err != nil {
			return nil, fmt.Errorf("OpenPGP keyring %s: %w", keyringPath, err)
		}
	}
	return s, nil
}

// VerifyCommit checks c's signature against s and says who made it. The
// error is ErrUnsigned or ErrUntrusted (for errors.Is) with a one-line
// reason naming the signing key where it is known, or another error if
// the commit cannot be read. A nil *Signers trusts no key.
//
// go-git keeps both SSH and OpenPGP signatures in c.PGPSignature (git
// writes both to the commit's gpgsig header); the signed payload is the
// commit without that header, c.EncodeWithoutSignature.
func (s *Signers) VerifyCommit(c *object.Commit) (Signature, error) {
	if s == nil {
		s = &Signers{}
	}
	armored := strings.TrimSpace(c.PGPSignature)
	if armored == "" {
		return Signature{}, &verifyError{ErrUnsigned, fmt.Sprintf("commit %s is not signed", ids.Short(c.Hash.String()))}
	}
	if len(armored) > maxSignatureSize {
		return Signature{}, untrusted(c, "signature is %d bytes, too large to be real", len(armored))
	}
	if n := strings.Count(armored, "-----BEGIN "); n > 1 {
		// git itself refuses these: which of the signers would be the one?
		return Signature{}, untrusted(c, "carries %d signatures; only singly signed commits are supported", n)
	}
	payload, err := signedPayload(c)
	if err != nil {
		return Signature{}, err
	}
	switch {
	case strings.HasPrefix(armored, sshSigBegin):
		return s.verifySSH(c, payload, armored)
	case strings.HasPrefix(armored, "-----BEGIN PGP SIGNATURE-----"):
		return s.verifyOpenPGP(c, payload, armored)
	case strings.HasPrefix(armored, "-----BEGIN SIGNED MESSAGE-----"):
		return Signature{}, untrusted(c, "signed with X.509 (gpg.format=x509), which gitopsd does not support; sign with SSH or OpenPGP")
	default:
		return Signature{}, untrusted(c, "signature is in an unknown format")
	}
}

// verifyError is a VerifyCommit failure: a message for people and a kind
// (ErrUnsigned, ErrUntrusted) for errors.Is.
type verifyError struct {
	kind error
	msg  string
}

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) Unwrap() error { return e.kind }

// untrusted is an ErrUntrusted failure for c.
func untrusted(c *object.Commit, format string, args ...any) error {
	return &verifyError{ErrUntrusted, "commit " + ids.Short(c.Hash.String()) + ": " + fmt.Sprintf(format, args...)}
}

// signedPayload is the commit as it was before signing: the commit object
// without its gpgsig header.
func signedPayload(c *object.Commit) ([]byte, error) {
	var obj plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&obj); err != nil {
		return nil, fmt.Errorf("commit %s: encode without signature: %w", ids.Short(c.Hash.String()), err)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("commit %s: read encoded commit: %w", ids.Short(c.Hash.String()), err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("commit %s: read encoded commit: %w", ids.Short(c.Hash.String()), err)
	}
	return b, nil
}

// SSH signatures (OpenSSH PROTOCOL.sshsig).

const (
	sshSigBegin  = "-----BEGIN SSH SIGNATURE-----"
	sshSigEnd    = "-----END SSH SIGNATURE-----"
	sshSigMagic  = "SSHSIG"
	sshNamespace = "git" // what git signs commits under (ssh-keygen -Y sign -n git)
)

// sshSig is an SSHSIG blob after its magic preamble.
type sshSig struct {
	Version       uint32
	PublicKey     []byte
	Namespace     string
	Reserved      []byte
	HashAlgorithm string
	Signature     []byte
}

// sshSignedData is what an SSHSIG signature is made over, after the magic
// preamble: the message enters only as its hash.
type sshSignedData struct {
	Namespace     string
	Reserved      []byte
	HashAlgorithm string
	Hash          []byte
}

// verifySSH checks an SSHSIG signature: the key must be in allowed_signers
// on a line that allows the commit, and the signature must verify.
func (s *Signers) verifySSH(c *object.Commit, payload []byte, armored string) (Signature, error) {
	sig, pub, err := parseSSHSig(armored)
	if err != nil {
		return Signature{}, untrusted(c, "malformed SSH signature: %v", err)
	}
	fp := ssh.FingerprintSHA256(pub)
	if s.allowedSignersPath == "" {
		return Signature{}, untrusted(c, "signed by SSH key %s but no allowed_signers file is configured", fp)
	}
	var listed []allowedSigner
	key := pub.Marshal()
	for _, e := range s.ssh {
		if bytes.Equal(e.key, key) {
			listed = append(listed, e)
		}
	}
	if len(listed) == 0 {
		return Signature{}, untrusted(c, "signed by %s which is not in allowed_signers %s", fp, s.allowedSignersPath)
	}
	if sig.Namespace != sshNamespace {
		return Signature{}, untrusted(c, "signature by %s is for namespace %q, not %q: it was not made by git commit -S", fp, sig.Namespace, sshNamespace)
	}
	if err := verifySSHSig(sig, pub, payload); err != nil {
		return Signature{}, untrusted(c, "signature by %s does not verify (%v): the commit was changed after signing, or the signature is forged", fp, err)
	}

	// The key may be listed more than once; any line that allows this
	// commit is enough, as for ssh-keygen.
	var principals []string
	var refusal string
	for _, e := range listed {
		if why := e.refuses(c.Committer.When); why != "" {
			if refusal == "" {
				refusal = why
			}
			continue
		}
		for _, p := range e.principals {
			if !slices.Contains(principals, p) {
				principals = append(principals, p)
			}
		}
	}
	if len(principals) == 0 {
		return Signature{}, untrusted(c, "signed by %s, but allowed_signers %s %s", fp, s.allowedSignersPath, refusal)
	}
	return Signature{Kind: KindSSH, Signer: strings.Join(principals, ","), Fingerprint: fp}, nil
}

// parseSSHSig decodes an armored SSHSIG signature and the public key it
// names. The key is only a claim until verifySSHSig has checked it.
func parseSSHSig(armored string) (sshSig, ssh.PublicKey, error) {
	var sig sshSig
	body, ok := strings.CutPrefix(armored, sshSigBegin)
	if !ok {
		return sig, nil, errors.New("missing BEGIN line")
	}
	body, ok = strings.CutSuffix(body, sshSigEnd)
	if !ok {
		return sig, nil, errors.New("missing END line (truncated?)")
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return sig, nil, fmt.Errorf("bad base64: %w", err)
	}
	rest, ok := bytes.CutPrefix(blob, []byte(sshSigMagic))
	if !ok {
		return sig, nil, errors.New("no SSHSIG preamble")
	}
	if err := ssh.Unmarshal(rest, &sig); err != nil {
		return sig, nil, fmt.Errorf("bad SSHSIG blob: %w", err)
	}
	if sig.Version != 1 {
		return sig, nil, fmt.Errorf("unsupported SSHSIG version %d", sig.Version)
	}
	pub, err := ssh.ParsePublicKey(sig.PublicKey)
	if err != nil {
		return sig, nil, fmt.Errorf("bad public key: %w", err)
	}
	return sig, pub, nil
}

// verifySSHSig checks that sig, made by pub, signs message.
func verifySSHSig(sig sshSig, pub ssh.PublicKey, message []byte) error {
	var digest []byte
	switch sig.HashAlgorithm {
	case "sha256":
		h := sha256.Sum256(message)
		digest = h[:]
	case "sha512":
		h := sha512.Sum512(message)
		digest = h[:]
	default:
		return fmt.Errorf("unsupported hash algorithm %q", sig.HashAlgorithm)
	}
	var ssig ssh.Signature
	if err := ssh.Unmarshal(sig.Signature, &ssig); err != nil {
		return fmt.Errorf("bad signature: %w", err)
	}
	if ssig.Format == ssh.KeyAlgoRSA {
		// pub.Verify would accept it, but SSHSIG forbids RSA with SHA-1.
		return errors.New("RSA signature with SHA-1 (ssh-rsa), which SSHSIG does not allow")
	}
	signed := append([]byte(sshSigMagic), ssh.Marshal(sshSignedData{
		Namespace:     sig.Namespace,
		Reserved:      sig.Reserved,
		HashAlgorithm: sig.HashAlgorithm,
		Hash:          digest,
	})...)
	return pub.Verify(signed, &ssig)
}

// OpenPGP signatures.

// verifyOpenPGP checks an OpenPGP signature: the key must be in the
// keyring, able to sign, unexpired and unrevoked, and the signature must
// verify.
func (s *Signers) verifyOpenPGP(c *object.Commit, payload []byte, armored string) (Signature, error) {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return Signature{}, untrusted(c, "malformed OpenPGP signature: %v", err)
	}
	if block.Type != openpgp.SignatureType {
		return Signature{}, untrusted(c, "malformed OpenPGP signature: armor holds %q, not a signature", block.Type)
	}
	body, err := io.ReadAll(block.Body) // checks the armor's checksum too
	if err != nil {
		return Signature{}, untrusted(c, "malformed OpenPGP signature: %v", err)
	}
	keyID, issuer := openPGPIssuer(body)
	if s.keyringPath == "" {
		return Signature{}, untrusted(c, "signed by OpenPGP key %s but no OpenPGP keyring is configured", issuer)
	}

	now := s.now
	if now == nil {
		now = time.Now
	}
	sig, signer, err := openpgp.VerifyDetachedSignature(s.keyring, bytes.NewReader(payload), bytes.NewReader(body), &packet.Config{Time: now})
	if signer != nil && sig != nil && sig.IssuerKeyId != nil {
		issuer = keyFingerprint(signer, *sig.IssuerKeyId)
	}
	switch {
	case err == nil:
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		if keyID != 0 && len(s.keyring.KeysById(keyID)) > 0 {
			return Signature{}, untrusted(c, "signed by OpenPGP key %s, which is in keyring %s but not marked for signing", issuer, s.keyringPath)
		}
		return Signature{}, untrusted(c, "signed by OpenPGP key %s which is not in keyring %s", issuer, s.keyringPath)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return Signature{}, untrusted(c, "signed by OpenPGP key %s (%s), which has been revoked", issuer, pgpIdentity(signer))
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return Signature{}, untrusted(c, "signed by OpenPGP key %s (%s), which has expired", issuer, pgpIdentity(signer))
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return Signature{}, untrusted(c, "signature by OpenPGP key %s (%s) has expired", issuer, pgpIdentity(signer))
	default:
		var bad pgperrors.SignatureError
		if errors.As(err, &bad) {
			return Signature{}, untrusted(c, "signature by OpenPGP key %s does not verify (%v): the commit was changed after signing, or the signature is forged", issuer, err)
		}
		return Signature{}, untrusted(c, "malformed OpenPGP signature by key %s: %v", issuer, err)
	}
	return Signature{Kind: KindOpenPGP, Signer: pgpIdentity(signer), Fingerprint: issuer}, nil
}

// openPGPIssuer names the key the first signature packet in body claims to
// be made by, for messages: its fingerprint if the signature carries one,
// else its key ID, else "(unknown)". keyID is 0 if there is none.
func openPGPIssuer(body []byte) (keyID uint64, name string) {
	p, err := packet.NewReader(bytes.NewReader(body)).Next()
	if err != nil {
		return 0, "(unknown)"
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return 0, "(unknown)"
	}
	if sig.IssuerKeyId != nil {
		keyID = *sig.IssuerKeyId
	}
	switch {
	case len(sig.IssuerFingerprint) > 0:
		return keyID, fmt.Sprintf("%X", sig.IssuerFingerprint)
	case sig.IssuerKeyId != nil:
		return keyID, fmt.Sprintf("%016X", keyID)
	}
	return 0, "(unknown)"
}

// keyFingerprint is the fingerprint of e's key (primary or subkey) with ID
// id, in gpg's upper-case hex.
func keyFingerprint(e *openpgp.Entity, id uint64) string {
	if e.PrimaryKey != nil && e.PrimaryKey.KeyId == id {
		return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
	}
	for _, sk := range e.Subkeys {
		if sk.PublicKey != nil && sk.PublicKey.KeyId == id {
			return fmt.Sprintf("%X", sk.PublicKey.Fingerprint)
		}
	}
	return fmt.Sprintf("%016X", id)
}

// pgpIdentity is e's primary user ID ("name <email>"), or "" if unknown.
func pgpIdentity(e *openpgp.Entity) string {
	if e == nil {
		return ""
	}
	if id := e.PrimaryIdentity(); id != nil {
		return id.Name
	}
	return ""
}

// parseKeyring reads every armored public key block in data. go-crypto's
// ReadArmoredKeyRing stops after the first block, but a keyring made by
// appending `gpg --armor --export` outputs has one block per key.
func parseKeyring(data []byte) (openpgp.EntityList, error) {
	const begin = "-----BEGIN PGP "
	text := string(data)
	var starts []int
	for i := 0; ; {
		j := strings.Index(text[i:], begin)
		if j < 0 {
			break
		}
		starts = append(starts, i+j)
		i += j + len(begin)
	}
	if len(starts) == 0 {
		return nil, errors.New("no armored key block (write one with gpg --armor --export KEY)")
	}
	var keyring openpgp.EntityList
	for n, start := range starts {
		end := len(text)
		if n+1 < len(starts) {
			end = starts[n+1]
		}
		block := text[start:end]
		if strings.HasPrefix(block, "-----BEGIN PGP PRIVATE KEY BLOCK-----") {
			return nil, fmt.Errorf("key block %d is a private key; give only the public key (gpg --armor --export KEY)", n+1)
		}
		el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(block))
		if err != nil {
			return nil, fmt.Errorf("key block %d: %w", n+1, err)
		}
		keyring = append(keyring, el...)
	}
	if len(keyring) == 0 {
		return nil, errors.New("no keys")
	}
	return keyring, nil
}
