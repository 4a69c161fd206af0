package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeYAML reads data over c, key by key: keys absent from the file keep
// c's values (the defaults), null values too. It is strict: an unknown key,
// a duplicate key, a value of the wrong shape or a bad duration is an *Error
// naming the key path and its line. It returns the line of every key it set,
// so that Validate's errors can point into the file as well.
//
// It walks yaml.Node itself rather than using Decoder.KnownFields, whose
// errors name the Go type instead of the key path and come several to a
// message.
func decodeYAML(data []byte, c *Config) (map[string]int, error) {
	lines := map[string]int{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty, or only comments
			return lines, nil
		}
		return nil, syntaxError(err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if !isEmptyDocument(&next) { // a trailing "---" is harmless
			return nil, &Error{Line: next.Line, Msg: "more than one YAML document"}
		}
	}
	if isEmptyDocument(&doc) {
		return lines, nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := decoder{lines: lines}
	if err := d.value(root, reflect.ValueOf(c).Elem(), ""); err != nil {
		return nil, err
	}
	return lines, nil
}

func isEmptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return n.Kind == yaml.DocumentNode || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns "yaml: line 3: did not find ..." into an *Error for line 3.
func syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

type decoder struct {
	lines map[string]int
}

var durationType = reflect.TypeOf(time.Duration(0))

// value decodes n into v; key is the dotted path of n ("" for the root).
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // "key:" with no value keeps the default
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			return d.shape(n, key, "a duration such as 30s, 1m or 1h")
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			return &Error{Line: n.Line, Key: key, Msg: fmt.Sprintf("%q is not a duration such as 30s, 1m or 1h", n.Value)}
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			return d.shape(n, key, "a string")
		}
		// The text as written: `name: 01` stays "01", `branch: yes` "yes".
		v.SetString(n.Value)
	case v.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			return d.shape(n, key, "true or false")
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			return &Error{Line: n.Line, Key: key, Msg: fmt.Sprintf("%q is not true or false", n.Value)}
		}
		v.SetBool(b)
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Bool:
		// A *bool tells "not set" (nil) from false, for keys whose default
		// comes from elsewhere (a preset).
		b := reflect.New(v.Type().Elem())
		if err := d.value(n, b.Elem(), key); err != nil {
			return err
		}
		v.Set(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		if n.Kind != yaml.SequenceNode {
			return d.shape(n, key, "a list of strings")
		}
		list := reflect.MakeSlice(v.Type(), 0, len(n.Content)) // the file's list replaces the default
		for i, item := range n.Content {
			for item.Kind == yaml.AliasNode {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode {
				return d.shape(item, fmt.Sprintf("%s[%d]", key, i), "a string")
			}
			if item.Tag == "!!null" {
				return &Error{Line: item.Line, Key: fmt.Sprintf("%s[%d]", key, i), Msg: "empty list item"}
			}
			list = reflect.Append(list, reflect.ValueOf(item.Value))
		}
		v.Set(list)
	case v.Kind() == reflect.Struct:
		return d.mapping(n, key, func(k *yaml.Node, val *yaml.Node, path string) error {
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				return &Error{Line: k.Line, Key: path, Msg: msgUnknownKey}
			}
			return d.value(val, f, path)
		})
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		m := reflect.MakeMap(v.Type()) // the file's map replaces the default
		err := d.mapping(n, key, func(k *yaml.Node, val *yaml.Node, path string) error {
			for val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			if val.Kind != yaml.ScalarNode {
				return d.shape(val, path, "a string")
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val.Value))
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("config: no YAML decoding for %s (key %s)", v.Type(), key))
	}
	return nil
}

// mapping calls each for every key of the mapping n (whose path is key),
// after checking it is a plain, unique scalar key.
func (d *decoder) mapping(n *yaml.Node, key string, each func(k, v *yaml.Node, path string) error) error {
	if n.Kind != yaml.MappingNode {
		return d.shape(n, key, "a mapping of keys")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return &Error{Line: k.Line, Key: key, Msg: "keys must be plain strings"}
		}
		if k.Tag == "!!merge" {
			return &Error{Line: k.Line, Key: key, Msg: "YAML merge keys (<<) are not supported"}
		}
		path := k.Value
		if key != "" {
			path = key + "." + k.Value
		}
		if seen[k.Value] {
			return &Error{Line: k.Line, Key: path, Msg: fmt.Sprintf("duplicate key (first at line %d)", d.lines[path])}
		}
		seen[k.Value] = true
		d.lines[path] = k.Line
		if err := each(k, val, path); err != nil {
			return err
		}
	}
	return nil
}

// shape reports a value of the wrong kind.
func (d *decoder) shape(n *yaml.Node, key, want string) error {
	got := map[yaml.Kind]string{yaml.ScalarNode: "a scalar", yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}[n.Kind]
	if key == "" {
		return &Error{Line: n.Line, Msg: fmt.Sprintf("the file must be %s, not %s", want, got)}
	}
	return &Error{Line: n.Line, Key: key, Msg: fmt.Sprintf("want %s, not %s", want, got)}
}

// fieldByTag is the field of struct v whose yaml tag is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == name && tag != "" && tag != "-" {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
