package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"
)

// Format is the document format of a SOPS file.
type Format string

// The formats gitopsd decrypts. The values are the names sops uses for its
// --input-type flag.
const (
	Dotenv Format = "dotenv" // KEY=value lines, metadata in sops_* keys
	YAML   Format = "yaml"   // one or more documents, metadata under "sops"
	JSON   Format = "json"   // one object, metadata under "sops"
)

// MaxFileSize is the largest file Decrypt accepts. Secrets files are small;
// the bound keeps a hostile repository from making the daemon parse and
// hash without end.
const MaxFileSize = 4 << 20

// Errors callers may want to tell apart, to report a reason a person can act
// on. Returned errors wrap them; test with errors.Is.
var (
	// ErrNotSOPS means the data has no SOPS metadata: it is not encrypted.
	ErrNotSOPS = errors.New("not a SOPS file")
	// ErrMACMismatch means the file was changed after it was encrypted.
	ErrMACMismatch = errors.New("MAC mismatch: the file was modified after it was encrypted")
	// ErrNoIdentity means none of the given age identities can decrypt the
	// file's data key.
	ErrNoIdentity = errors.New("no age identity matches")
	// ErrUnsupported means the file uses a SOPS feature gitopsd does not
	// implement, such as a data key encrypted only for PGP or a cloud KMS.
	ErrUnsupported = errors.New("unsupported")
)

// FormatOf picks the format of a file from its name the way sops does:
// names ending in .yaml or .yml are YAML, .json is JSON, and .env (the file
// ".env" itself or, say, "prod.env") is dotenv. ok is false for anything
// else, which sops would treat as binary.
func FormatOf(name string) (f Format, ok bool) {
	switch {
	case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"):
		return YAML, true
	case strings.HasSuffix(name, ".json"):
		return JSON, true
	case strings.HasSuffix(name, ".env"):
		return Dotenv, true
	}
	return "", false
}

// IsEncrypted reports whether data is a SOPS file of format f: a document of
// that format with SOPS metadata that holds a MAC. It decrypts nothing.
//
// Data larger than MaxFileSize is not parsed; it counts as encrypted when it
// contains an encrypted value at all, so that a caller which decrypts
// encrypted files and uses the others as they are gets Decrypt's size error
// rather than deploying ciphertext.
func IsEncrypted(data []byte, f Format) bool {
	if len(data) > MaxFileSize {
		return bytes.Contains(data, []byte(encPrefix))
	}
	branches, err := load(data, f)
	if err != nil {
		return false
	}
	_, raw, err := extractMetadata(branches, f)
	if err != nil {
		return false
	}
	_, hasMAC := raw.get("mac")
	return hasMAC
}

// Decrypt decrypts a SOPS file of format f with one of identities and
// verifies its MAC. It returns the plaintext document in the same format,
// without the SOPS metadata, as "sops decrypt" prints it: dotenv as KEY=value
// lines (newlines in values written as \n), YAML and JSON with their key
// order and, for YAML, their comments kept.
func Decrypt(data []byte, f Format, identities []age.Identity) ([]byte, error) {
	out, _, err := DecryptDocument(data, f, identities)
	return out, err
}

// DecryptDocument is Decrypt that also returns the values that were
// encrypted in the file, as text in file order, for a Redactor: cleartext
// values (an unencrypted_suffix key, say) and comments are not among them.
func DecryptDocument(data []byte, f Format, identities []age.Identity) (plain []byte, encrypted []string, err error) {
	branches, w, err := decrypt(data, f, identities)
	if err != nil {
		return nil, nil, err
	}
	out, err := emit(branches, f)
	if err != nil {
		return nil, nil, fmt.Errorf("write decrypted %s: %w", f, err)
	}
	return out, w.found, nil
}

// EnvVar is one KEY=value pair of a dotenv file.
type EnvVar struct {
	Name  string
	Value string // may contain newlines
}

// DecryptEnv decrypts a SOPS dotenv file like Decrypt and returns its
// variables in file order, comments left out. Values are returned as they
// were before encryption: a "\n" in the file is a newline here.
func DecryptEnv(data []byte, identities []age.Identity) ([]EnvVar, error) {
	vars, _, err := DecryptEnvDocument(data, identities)
	return vars, err
}

// DecryptEnvDocument is DecryptEnv that also returns the values that were
// encrypted in the file, as DecryptDocument does.
func DecryptEnvDocument(data []byte, identities []age.Identity) (vars []EnvVar, encrypted []string, err error) {
	branches, w, err := decrypt(data, Dotenv, identities)
	if err != nil {
		return nil, nil, err
	}
	return envVars(branches[0]), w.found, nil
}

// LoadIdentities reads the age identities in the file at path: one
// AGE-SECRET-KEY-... per line, with empty lines and # comments ignored, as
// age-keygen writes them and age.ParseIdentities reads them.
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load age identities: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		// age's parse errors name the line, never the key material.
		return nil, fmt.Errorf("load age identities from %s: %w", path, err)
	}
	return ids, nil
}

// decrypt runs the whole pipeline up to, not including, writing the
// plaintext back out; it returns the decrypted branches without metadata,
// and the walk that decrypted them.
func decrypt(data []byte, f Format, identities []age.Identity) ([]mapping, *walker, error) {
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("%s file is %d bytes, more than the %d allowed", f, len(data), MaxFileSize)
	}
	branches, err := load(data, f)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", f, err)
	}
	branches, raw, err := extractMetadata(branches, f)
	if err != nil {
		return nil, nil, err
	}
	meta, err := decodeMetadata(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("sops metadata: %w", err)
	}
	key, err := meta.dataKey(identities)
	if err != nil {
		return nil, nil, err
	}
	mac, w, err := decryptTree(branches, key, meta)
	if err != nil {
		return nil, nil, err
	}
	if err := meta.verifyMAC(mac, key); err != nil {
		return nil, nil, err
	}
	return branches, w, nil
}

// load parses data of format f into SOPS's tree: one branch per document.
func load(data []byte, f Format) ([]mapping, error) {
	switch f {
	case Dotenv:
		return loadDotenv(data)
	case YAML:
		return loadYAML(data)
	case JSON:
		return loadJSON(data)
	}
	return nil, fmt.Errorf("%w: format %q", ErrUnsupported, f)
}

// emit writes decrypted branches in format f.
func emit(branches []mapping, f Format) ([]byte, error) {
	switch f {
	case Dotenv:
		return emitDotenv(branches[0]), nil
	case YAML:
		return emitYAML(branches)
	case JSON:
		return emitJSON(branches[0])
	}
	return nil, fmt.Errorf("%w: format %q", ErrUnsupported, f)
}
