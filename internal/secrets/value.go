package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// encPrefix starts every value sops encrypts.
const encPrefix = "ENC[AES256_GCM,"

// decryptValue opens one ENC[AES256_GCM,...] value with the data key and
// the value's key path as additional data, and returns it with the type
// sops recorded. The empty string is never encrypted, so it stays empty.
//
// No error carries the plaintext, not even a part of it: a value that does
// not parse as its recorded type is reported by type only.
func decryptValue(text string, key []byte, aad string) (any, error) {
	if text == "" {
		return "", nil
	}
	v, err := parseEncrypted(text)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	if len(v.iv) == 0 {
		return nil, errors.New("empty iv")
	}
	// sops writes 32-byte IVs, not GCM's usual 12.
	gcm, err := cipher.NewGCMWithNonceSize(block, len(v.iv))
	if err != nil {
		return nil, err
	}
	sealed := make([]byte, 0, len(v.data)+len(v.tag))
	sealed = append(append(sealed, v.data...), v.tag...)
	plain, err := gcm.Open(nil, v.iv, sealed, []byte(aad))
	if err != nil {
		// Go's error says only "message authentication failed".
		return nil, err
	}
	return typed(plain, v.typ)
}

// encrypted is a parsed ENC[...] value.
type encrypted struct {
	data, iv, tag []byte
	typ           string
}

// parseEncrypted splits ENC[AES256_GCM,data:...,iv:...,tag:...,type:...].
// The error never quotes text: where a value should be encrypted but is
// not, text is plaintext someone forgot to encrypt.
func parseEncrypted(text string) (encrypted, error) {
	var v encrypted
	body, ok := strings.CutPrefix(text, encPrefix)
	if ok {
		body, ok = strings.CutSuffix(body, "]")
	}
	fields := strings.Split(body, ",")
	if !ok || len(fields) != 4 {
		return v, errors.New("value is not of the form ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]")
	}
	for i, field := range []struct {
		name string
		dst  *[]byte
	}{{"data", &v.data}, {"iv", &v.iv}, {"tag", &v.tag}} {
		b64, ok := strings.CutPrefix(fields[i], field.name+":")
		if !ok {
			return v, fmt.Errorf("encrypted value has no %s field", field.name)
		}
		var err error
		if *field.dst, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return v, fmt.Errorf("encrypted value's %s: %w", field.name, err)
		}
	}
	if v.typ, ok = strings.CutPrefix(fields[3], "type:"); !ok {
		return v, errors.New("encrypted value has no type field")
	}
	return v, nil
}

// typed converts decrypted bytes to the Go value of the type sops recorded,
// so that writing the document and hashing it for the MAC format the value
// the way sops does.
func typed(plain []byte, typ string) (any, error) {
	s := string(plain)
	switch typ {
	case "str":
		return s, nil
	case "bytes":
		return plain, nil
	case "comment":
		return comment{text: s}, nil
	case "int":
		if n, err := strconv.Atoi(s); err == nil {
			return n, nil
		}
	case "float":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f, nil
		}
	case "bool":
		if b, err := strconv.ParseBool(s); err == nil {
			return b, nil
		}
	case "time":
		var t time.Time
		if err := t.UnmarshalText(plain); err == nil {
			return t, nil
		}
	default:
		return nil, fmt.Errorf("unknown value type %q", typ)
	}
	// strconv's and time's errors quote their input: the plaintext.
	return nil, fmt.Errorf("decrypted value is not a valid %s", typ)
}

// macBytes is how sops feeds a value to the MAC; sops's Python origins show
// in the booleans.
func macBytes(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	case int:
		return []byte(strconv.Itoa(v)), nil
	case float64:
		return []byte(strconv.FormatFloat(v, 'f', -1, 64)), nil
	case bool:
		if v {
			return []byte("True"), nil
		}
		return []byte("False"), nil
	case time.Time:
		return v.MarshalText()
	}
	return nil, fmt.Errorf("value of type %s cannot be hashed", typeName(v))
}

// typeName names a tree value's type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case []byte:
		return "bytes"
	case int:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case time.Time:
		return "time"
	case comment:
		return "comment"
	case mapping:
		return "mapping"
	case sequence:
		return "list"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
