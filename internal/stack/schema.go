package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/validation"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"
)

// compose-go validates each compose file against the compose
// specification's JSON schema as it merges it, and compiles that schema
// anew for every file of every load: most of a load's CPU. gitopsd loads
// with compose-go's validation off and judges the result itself, with the
// same schema, compiled once per process by the same library
// (composeSchema). Whatever it cannot vouch for (compose-go failing, a
// document or the loaded model the schema refuses, a stack whose files
// gitopsd does not see merged: include, extends) is loaded again with
// compose-go's own validation, so that an invalid stack fails with the
// words, file and line it always had. The fast path only decides that a
// stack is valid; every verdict of invalid is compose-go's.

// composeSchema is compose-go's schema (schema.Schema), compiled as
// schema.Validate compiles it.
var composeSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema.Schema))
	if err != nil {
		return nil, fmt.Errorf("read the compose schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose-spec.json", doc); err != nil {
		return nil, fmt.Errorf("add the compose schema: %w", err)
	}
	c.RegisterFormat(&jsonschema.Format{Name: "duration", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected string")
		}
		_, err := time.ParseDuration(s)
		return err
	}})
	return c.Compile("compose-spec.json")
})

// schemaValid says whether the compose schema accepts v.
func schemaValid(v any) bool {
	s, err := composeSchema()
	return err == nil && s.Validate(v) == nil
}

// loadModel is compose-go's LoadModelWithContext with these options,
// validated by the once-compiled schema where gitopsd can vouch for the
// result, else by compose-go.
func (g loading) loadModel(ctx context.Context, opts []func(*loader.Options)) (map[string]any, error) {
	if g.docs != nil {
		if model, ok := g.fastModel(ctx, opts); ok {
			return model, nil
		}
	}
	return loader.LoadModelWithContext(ctx, g.details(), opts...)
}

// fastModel loads the model with compose-go's validation off, and returns
// it only if gitopsd can vouch that compose-go's validation would have
// passed: ok false sends the caller to compose-go's own validation.
func (g loading) fastModel(ctx context.Context, opts []func(*loader.Options)) (model map[string]any, ok bool) {
	docs := g.docs
	if !docs.valid {
		return nil, false
	}
	defer func() {
		// Unvalidated input may take compose-go where it does not
		// expect to be; compose-go's validation will say what is wrong.
		if recover() != nil {
			model, ok = nil, false
		}
	}()
	fast := append(slices.Clone(opts), func(o *loader.Options) { o.SkipValidation = true })
	model, err := loader.LoadModelWithContext(ctx, g.details(), fast...)
	if err != nil || ctx.Err() != nil {
		return nil, false
	}
	if validation.Validate(model) != nil || !schemaValid(model) {
		return nil, false
	}
	fastModels.Add(1)
	// compose-go's validation drops `version`, telling of each file
	// that has it.
	if _, has := model["version"]; has {
		delete(model, "version")
		for _, f := range docs.versioned {
			warnObsoleteVersion(f)
		}
	}
	return model, true
}

// documents is what gitopsd saw of a stack's compose files, read as
// compose-go reads them and interpolated: valid says the schema accepts
// each of their documents on its own and none includes other files or
// extends services, so that the loaded model is all there is to judge.
type documents struct {
	valid     bool
	versioned []string // the files with a top-level version
}

// readDocuments reads the stack's compose files for the fast path.
func (g loading) readDocuments(opts []func(*loader.Options)) (docs *documents) {
	docs = &documents{}
	defer func() {
		if recover() != nil {
			docs = &documents{} // compose-go's own reading says what is wrong
		}
	}()
	details := g.details()
	interp := loader.ToOptions(&details, opts).Interpolate
	if interp == nil {
		return docs
	}
	for _, f := range g.sel.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return docs
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		versioned := false
		for {
			var node yaml.Node
			err := dec.Decode(&node)
			if err == io.EOF {
				break
			}
			if err != nil || hasLocalTag(&node) {
				return docs // !reset, !override: compose-go's own reading
			}
			var raw any
			if err := node.Decode(&raw); err != nil {
				return docs
			}
			doc, ok := raw.(map[string]any)
			if !ok || !stringKeys(doc) {
				return docs
			}
			if _, has := doc["include"]; has || extends(doc) {
				return docs
			}
			doc, err = interpolation.Interpolate(doc, *interp)
			if err != nil || !schemaValid(doc) {
				return docs
			}
			if _, has := doc["version"]; has {
				versioned = true
			}
		}
		if versioned {
			docs.versioned = append(docs.versioned, f)
		}
	}
	docs.valid = true
	return docs
}

// hasLocalTag says whether a YAML node or one under it has a tag of the
// file's own (!reset, !override), which compose-go gives a meaning.
func hasLocalTag(n *yaml.Node) bool {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return true
	}
	for _, c := range n.Content {
		if hasLocalTag(c) {
			return true
		}
	}
	return false // an alias's node is judged where it is anchored
}

// stringKeys says whether every mapping in v has string keys, as the
// schema needs them.
func stringKeys(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			if !stringKeys(e) {
				return false
			}
		}
	case map[any]any:
		return false
	case []any:
		for _, e := range v {
			if !stringKeys(e) {
				return false
			}
		}
	}
	return true
}

// extends says whether a service of the document extends another.
func extends(doc map[string]any) bool {
	services, _ := doc["services"].(map[string]any)
	for _, s := range services {
		if svc, ok := s.(map[string]any); ok {
			if _, has := svc["extends"]; has {
				return true
			}
		}
	}
	return false
}

// fastModels counts the models the fast path vouched for.
var fastModels atomic.Int64

var (
	versionMu     sync.Mutex
	versionWarned = map[string]bool{}
)

// warnObsoleteVersion tells, once per file as compose-go does, that the
// file's `version` is ignored.
func warnObsoleteVersion(file string) {
	versionMu.Lock()
	defer versionMu.Unlock()
	if !versionWarned[file] {
		versionWarned[file] = true
		logrus.Warning(fmt.Sprintf("%s: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion", file))
	}
}
