package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyIsInTheUsersReference: docs/configuration.md, the reference
// users read, names every key the loader accepts, so a key added here
// cannot ship undocumented.
func TestEveryKeyIsInTheUsersReference(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	keys := yamlKeys(reflect.TypeOf(Config{}), "")
	if len(keys) < 20 {
		t.Fatalf("found only %d keys in Config: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document %s (as `%s`)", k, k)
		}
	}
	for _, e := range EnvOverrides {
		if !strings.Contains(doc, "`"+e.Var+"`") {
			t.Errorf("docs/configuration.md does not name %s", e.Var)
		}
	}
}

// yamlKeys lists the dotted keys of t's yaml tags: each leaf, and each
// mapping section (source, source.auth...) too.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			keys = append(keys, yamlKeys(ft, key+".")...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}
