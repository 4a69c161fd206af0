package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxDepth bounds the nesting of YAML and JSON documents, so hostile input
// cannot exhaust the stack of the recursive walks.
const maxDepth = 256

// loadJSON reads a JSON document whose top level is an object, keeping its
// keys in order (and, like sops, duplicate keys as they are).
func loadJSON(data []byte) ([]mapping, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	// Numbers become int when they are integers that fit, float64 otherwise,
	// as in sops; the MAC depends on it.
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("the top level is not an object")
	}
	m, err := jsonObject(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level object")
	}
	return []mapping{m}, nil
}

// jsonObject reads the members of an object whose '{' has been read.
func jsonObject(dec *json.Decoder, depth int) (mapping, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	m := mapping{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, eofIsUnexpected(err)
		}
		if tok == json.Delim('}') {
			return m, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("offset %d: expected an object key", dec.InputOffset())
		}
		v, err := jsonValue(dec, depth)
		if err != nil {
			return nil, err
		}
		m = append(m, entry{key: key, value: v})
	}
}

// jsonArray reads the elements of an array whose '[' has been read.
func jsonArray(dec *json.Decoder, depth int) (sequence, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	q := sequence{}
	for dec.More() {
		v, err := jsonValue(dec, depth)
		if err != nil {
			return nil, err
		}
		q = append(q, v)
	}
	if _, err := dec.Token(); err != nil { // the ']'
		return nil, eofIsUnexpected(err)
	}
	return q, nil
}

// jsonValue reads one value.
func jsonValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, eofIsUnexpected(err)
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '{' {
			return jsonObject(dec, depth+1)
		}
		if tok == '[' {
			return jsonArray(dec, depth+1)
		}
		return nil, fmt.Errorf("offset %d: unexpected %q", dec.InputOffset(), tok)
	case json.Number:
		if n, err := tok.Int64(); err == nil && int64(int(n)) == n {
			return int(n), nil
		}
		f, err := tok.Float64()
		if err != nil {
			return nil, fmt.Errorf("offset %d: number out of range", dec.InputOffset())
		}
		return f, nil
	case string, bool, nil:
		return tok, nil
	}
	return nil, fmt.Errorf("offset %d: unexpected token", dec.InputOffset())
}

// eofIsUnexpected turns the decoder's io.EOF in the middle of a document
// into an error that says so.
func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// emitJSON writes m as sops does: members in order, comments left out,
// indented with tabs, and a final newline.
func emitJSON(m mapping) ([]byte, error) {
	var compact bytes.Buffer
	if err := writeJSON(&compact, m); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "\t"); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// writeJSON writes v compactly.
func writeJSON(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case mapping:
		b.WriteByte('{')
		first := true
		for _, e := range v {
			key, ok := e.key.(string)
			if !ok {
				continue // a comment
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			k, _ := json.Marshal(key)
			b.Write(k)
			b.WriteString(": ")
			if err := writeJSON(b, e.value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case sequence:
		b.WriteByte('[')
		first := true
		for _, item := range v {
			if _, ok := item.(comment); ok {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			if err := writeJSON(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		s, err := json.Marshal(v)
		if err != nil {
			// Not err: for NaN and ±Inf it quotes the value.
			return fmt.Errorf("a %s value cannot be written as JSON", typeName(v))
		}
		b.Write(s)
	}
	return nil
}
