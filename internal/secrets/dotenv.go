package secrets

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// loadDotenv reads a dotenv file as sops does: one KEY=value per line,
// split at the first '=', with no quoting and no "export"; a line that
// starts with '#' is a comment; empty lines are dropped; the two characters
// \n in a value stand for a newline.
func loadDotenv(data []byte) ([]mapping, error) {
	var m mapping
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			m = append(m, entry{key: comment{text: string(line[1:])}})
			continue
		}
		key, value, ok := bytes.Cut(line, []byte("="))
		if !ok {
			// Not quoted: the line might be a secret pasted in clear.
			return nil, fmt.Errorf("line %d: no '=' in a line that is not a comment", i+1)
		}
		m = append(m, entry{key: string(key), value: strings.ReplaceAll(string(value), `\n`, "\n")})
	}
	return []mapping{m}, nil
}

// emitDotenv writes m as sops writes a dotenv file.
func emitDotenv(m mapping) []byte {
	var b bytes.Buffer
	for _, e := range m {
		if c, ok := e.key.(comment); ok {
			b.WriteString("#" + c.text + "\n")
			continue
		}
		name, _ := e.key.(string)
		b.WriteString(name + "=" + strings.ReplaceAll(envString(e.value), "\n", `\n`) + "\n")
	}
	return b.Bytes()
}

// envVars lists the variables of a decrypted dotenv branch.
func envVars(m mapping) []EnvVar {
	var vars []EnvVar
	for _, e := range m {
		if name, ok := e.key.(string); ok {
			vars = append(vars, EnvVar{Name: name, Value: envString(e.value)})
		}
	}
	return vars
}

// envString formats a dotenv value. Values sops encrypts from a dotenv file
// are all strings; the other types appear only in hand-made files and are
// formatted as sops formats them.
func envString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		s := strconv.FormatFloat(v, 'G', -1, 64)
		if !strings.ContainsAny(s, ".E") {
			// Keep a float recognisable as one: 3 is written 3.0.
			s = strconv.FormatFloat(v, 'f', 1, 64)
		}
		return s
	case time.Time:
		return v.Format(time.RFC3339)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
