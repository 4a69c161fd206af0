package stack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/policy"
)

// Limits on what a stack folder may hold, so a hostile or mistaken commit
// cannot make the loader read without bound: compose-go reads whole files
// into memory, several times over.
const (
	// MaxFileBytes bounds each file the loader reads: compose files, .env
	// and env_file files.
	MaxFileBytes = 1 << 20
	// MaxEntries bounds the files and folders under one stack folder.
	MaxEntries = 100_000
	// MaxYAMLNodes bounds a YAML file with its aliases expanded. compose-go
	// v2.9.1 expands aliases itself (its !reset/!override processor), past
	// yaml.v3's own guard, so a "billion laughs" file would hang it for
	// hours, and 60k nodes already take it 2 s; a large real compose file
	// expands to some ten thousand nodes.
	MaxYAMLNodes = 50_000
)

// ruleOutside names the policy key that lets a stack reach outside its
// folder, for the errors that refuse it.
const ruleOutside = "policy.paths_outside_stack"

// preflight checks a stack folder before anything in it is read: no
// symlink may point outside it (a link to /etc/shadow would otherwise be
// read as a .env, an env_file, an include or a compose file), unless
// allowed, and no YAML file in it expands past MaxYAMLNodes. The size of
// each file is checked where it is read.
func (l *locator) preflight(dir string, allowOutside bool) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("load stack %s: %w", l.stack, err)
	}
	entries := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if entries++; entries > MaxEntries {
			return &Error{Stack: l.stack, Msg: fmt.Sprintf("more than %d files and folders in the stack folder", MaxEntries)}
		}
		if d.Type().IsRegular() && isYAML(p) {
			rel, _ := filepath.Rel(root, p)
			return l.checkAliases(p, l.rel(filepath.Join(dir, rel)))
		}
		if d.Type()&fs.ModeSymlink == 0 || allowOutside {
			return nil
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			// A dangling link reads as a missing file; where it points
			// lexically still decides.
			link, rerr := os.Readlink(p)
			if rerr != nil {
				return rerr
			}
			target = link
			if !filepath.IsAbs(link) {
				target = filepath.Join(filepath.Dir(p), link)
			}
		}
		if !policy.Within(root, target) {
			rel, _ := filepath.Rel(root, p)
			return &Error{Stack: l.stack, File: l.rel(filepath.Join(dir, rel)),
				Msg: fmt.Sprintf("symlink points outside the stack folder, to %s (%s)", target, ruleOutside)}
		}
		return nil
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return fmt.Errorf("load stack %s: %w", l.stack, err)
	}
	return nil
}

// checkSize refuses a file the loader would read that is over MaxFileBytes;
// a missing file is left for the loader to report.
func (l *locator) checkSize(f string) error {
	st, err := os.Stat(f)
	if err != nil || st.Size() <= MaxFileBytes {
		return nil
	}
	return &Error{Stack: l.stack, File: l.rel(f), Msg: fmt.Sprintf("file is %d bytes, over the limit of %d", st.Size(), MaxFileBytes)}
}

// checkPaths refuses, after compose-go resolved them and before env files
// are read, the paths of project that leave the stack folder dir: env
// files, build contexts, and the files of secrets and configs. Binds are
// host paths by intent and are the policy's (bind_paths).
func (l *locator) checkPaths(project *types.Project, dir string, allowOutside bool) error {
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		for i, ef := range svc.EnvFiles {
			if !allowOutside && !policy.Within(dir, ef.Path) {
				return l.atPath(fmt.Sprintf("services.%s.env_file.%d", name, i), outsideMsg(l.shown(ef.Path)))
			}
			if err := l.checkSize(ef.Path); err != nil {
				return err
			}
		}
		if b := svc.Build; b != nil && !allowOutside && isLocalContext(b.Context) && !policy.Within(dir, b.Context) {
			return l.atPath(fmt.Sprintf("services.%s.build.context", name), outsideMsg(l.shown(b.Context)))
		}
	}
	if allowOutside {
		return nil
	}
	for name, s := range project.Secrets {
		if s.File != "" && !policy.Within(dir, s.File) {
			return l.atPath("secrets."+name+".file", outsideMsg(l.shown(s.File)))
		}
	}
	for name, c := range project.Configs {
		if c.File != "" && !policy.Within(dir, c.File) {
			return l.atPath("configs."+name+".file", outsideMsg(l.shown(c.File)))
		}
	}
	return nil
}

// shown names a path compose-go resolved as a user sees it: relative to
// the repository when inside it (the checkout's own path changes with every
// revision), else as the absolute host path it is.
func (l *locator) shown(p string) string {
	if policy.Within(l.repoDir, p) {
		return l.rel(p)
	}
	return p
}

// isLocalContext tells a build context on disk from a Git or HTTP URL.
func isLocalContext(ctx string) bool {
	return ctx != "" && !strings.Contains(ctx, "://") && !strings.HasPrefix(ctx, "git@")
}

// escapeGuard is a compose-go resource loader placed before its local one:
// it takes the include and extends paths that leave the stack folder and
// refuses them before the file is read. Relative paths are judged as
// written ("../x" leaves), as the loader does not say which file they are
// relative to; an include of a subfolder that climbs back is refused too.
type escapeGuard struct {
	stack, dir string
}

func (g escapeGuard) Accept(p string) bool {
	if strings.Contains(p, "://") {
		return false // a remote resource: compose-go refuses those without a loader
	}
	if filepath.IsAbs(p) {
		return !policy.Within(g.dir, p)
	}
	clean := filepath.Clean(p)
	return clean == ".." || strings.HasPrefix(clean, "../")
}

func (g escapeGuard) Load(_ context.Context, p string) (string, error) {
	return "", &Error{Stack: g.stack, Msg: outsideMsg(p)}
}

func outsideMsg(p string) string {
	return fmt.Sprintf("%s is outside the stack folder (%s)", p, ruleOutside)
}

func (g escapeGuard) Dir(p string) string { return filepath.Dir(p) }

func isYAML(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".yaml" || ext == ".yml"
}

// checkAliases refuses a YAML file (named rel in errors) whose aliases
// expand it past MaxYAMLNodes. Files over MaxFileBytes are left to the
// size check of the files the loader reads; a file that does not parse is
// left to the loader, which says where.
func (l *locator) checkAliases(p, rel string) error {
	st, err := os.Stat(p)
	if err != nil || st.Size() > MaxFileBytes {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	docs, _ := parseDocs(data) // the documents before a syntax error count
	sizes := map[*yaml.Node]int{}
	for _, doc := range docs {
		if n, at := expandedSize(doc, sizes, 0); n > MaxYAMLNodes {
			return &Error{Stack: l.stack, File: rel, Line: at, Msg: fmt.Sprintf("YAML aliases expand this file to more than %d nodes (an alias bomb?)", MaxYAMLNodes)}
		}
	}
	return nil
}

// expandedSize counts the nodes of n with every alias replaced by what it
// names, memoized per node so that counting stays linear in the file, and
// saturating past MaxYAMLNodes. It returns the line of the first alias that
// crossed the limit.
func expandedSize(n *yaml.Node, sizes map[*yaml.Node]int, depth int) (int, int) {
	if n == nil {
		return 0, 0
	}
	if s, ok := sizes[n]; ok {
		return s, 0
	}
	if depth > 10_000 {
		return MaxYAMLNodes + 1, n.Line // nesting no compose file needs
	}
	sizes[n] = MaxYAMLNodes + 1 // while counting: an alias of itself is a bomb too
	total, line := 1, 0
	if n.Kind == yaml.AliasNode {
		s, at := expandedSize(n.Alias, sizes, depth+1)
		total += s
		if total > MaxYAMLNodes && at == 0 {
			at = n.Line
		}
		line = at
	}
	for _, c := range n.Content {
		s, at := expandedSize(c, sizes, depth+1)
		total += s
		if line == 0 && total > MaxYAMLNodes {
			line = at
			if line == 0 {
				line = c.Line
			}
		}
		if total > MaxYAMLNodes {
			break
		}
	}
	total = min(total, MaxYAMLNodes+1)
	sizes[n] = total
	return total, line
}

// checkIncludes refuses the include entries of the stack's compose files
// (and of the files they include) that leave the stack folder, unless
// allowed, naming the file and line: their path, project_directory and
// env_file. compose-go reads an include's env files (and the .env of its
// project directory) itself, past any resource loader escapeGuard could
// stand in front of, so they must be judged before it runs. Values are
// interpolated as compose-go will: with the environment of the including
// file. Included files that preflight did not look at (not named .yaml or
// .yml, or outside the folder) are checked for size and alias bombs here.
func (l *locator) checkIncludes(dir string, sel selection, allowOutside bool) error {
	w := includeWalk{loc: l, dir: dir, allowOutside: allowOutside, seen: map[string]bool{}}
	for _, f := range sel.files {
		w.seen[f] = true // selectFiles checked them
	}
	for _, f := range sel.files {
		if err := w.entries(f, sel.workingDir, sel.env); err != nil {
			return err
		}
	}
	return nil
}

// includeWalk follows the include entries of a stack's compose files.
type includeWalk struct {
	loc          *locator
	dir          string
	allowOutside bool
	seen         map[string]bool // files checked
}

// included checks a file an include entry names, then its own entries.
func (w includeWalk) included(file, base string, env types.Mapping) error {
	if w.seen[file] {
		return nil
	}
	w.seen[file] = true
	if err := w.loc.checkSize(file); err != nil {
		return err
	}
	if !isYAML(file) || !policy.Within(w.dir, file) {
		if err := w.loc.checkAliases(file, w.loc.shown(file)); err != nil {
			return err
		}
	}
	return w.entries(file, base, env)
}

// entries checks the include entries of file, whose relative paths are
// relative to base, and the files they name.
func (w includeWalk) entries(file, base string, env types.Mapping) error {
	for _, doc := range parseFile(file) {
		for _, list := range under(doc, []string{"include"}) {
			if list.Kind != yaml.SequenceNode {
				continue // the loader says what is wrong with it
			}
			for i, entry := range list.Content {
				inc, err := w.entry(file, base, env, fmt.Sprintf("include.%d", i), resolve(entry))
				if err != nil {
					return err
				}
				for _, p := range inc.paths {
					if err := w.included(p, inc.projectDir, inc.env); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// include is one include entry, its paths made absolute and checked.
type include struct {
	paths      []string
	projectDir string
	env        types.Mapping // what the included files are interpolated with
}

// entry reads and checks one include entry (short or long syntax) of file
// at keyPath.
func (w includeWalk) entry(file, base string, env types.Mapping, keyPath string, entry *yaml.Node) (include, error) {
	inc := include{env: env}
	if entry == nil {
		return inc, nil
	}
	fields := map[string]*yaml.Node{"path": entry}
	if entry.Kind == yaml.MappingNode {
		fields = map[string]*yaml.Node{}
		for i := 0; i+1 < len(entry.Content); i += 2 {
			fields[entry.Content[i].Value] = resolve(entry.Content[i+1])
		}
	}
	check := func(key string, n *yaml.Node) (string, error) {
		p, ok := interpolatedPath(n, base, env)
		if ok && !w.allowOutside && leavesFolder(w.dir, n.Value, p) {
			return "", &Error{Stack: w.loc.stack, File: w.loc.rel(file), Line: n.Line, Msg: keyPath + "." + key + ": " + outsideMsg(n.Value)}
		}
		return p, nil
	}
	for _, n := range scalars(fields["path"]) {
		p, err := check("path", n)
		if err != nil {
			return inc, err
		}
		if p != "" {
			inc.paths = append(inc.paths, p)
		}
	}
	switch n := fields["project_directory"]; {
	case n != nil && n.Kind == yaml.ScalarNode && n.Value != "":
		p, err := check("project_directory", n)
		if err != nil {
			return inc, err
		}
		inc.projectDir = p
	case len(inc.paths) > 0:
		inc.projectDir = filepath.Dir(inc.paths[0])
	}
	var envFiles []string
	for _, n := range scalars(fields["env_file"]) {
		p, err := check("env_file", n)
		if err != nil {
			return inc, err
		}
		if p != "" {
			envFiles = append(envFiles, p)
		}
	}
	if fields["env_file"] == nil && inc.projectDir != "" {
		envFiles = []string{filepath.Join(inc.projectDir, ".env")}
	}
	inc.env = includeEnv(env, envFiles)
	return inc, nil
}

// includeEnv is env with the include's env files filling in what is unset,
// as compose-go merges them. Files that do not read are left for the
// loader to report.
func includeEnv(env types.Mapping, files []string) types.Mapping {
	out := env.Clone()
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() || st.Size() > MaxFileBytes {
			continue
		}
		if values, err := dotenv.GetEnvFromFile(out, []string{f}); err == nil {
			out.Merge(values)
		}
	}
	return out
}

// scalars are n's string values: n itself, or the items of a list.
func scalars(n *yaml.Node) []*yaml.Node {
	switch {
	case n == nil:
		return nil
	case n.Kind == yaml.ScalarNode:
		return []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		var out []*yaml.Node
		for _, item := range n.Content {
			if item = resolve(item); item != nil && item.Kind == yaml.ScalarNode {
				out = append(out, item)
			}
		}
		return out
	}
	return nil
}

// interpolatedPath is a path value interpolated with env and made
// absolute against base; not ok when it does not interpolate (the loader
// reports that) or names a remote resource.
func interpolatedPath(n *yaml.Node, base string, env types.Mapping) (string, bool) {
	v, err := template.SubstituteWithOptions(n.Value, env.Resolve, template.WithoutLogging) // the loader warns
	if err != nil || v == "" || strings.Contains(v, "://") {
		return "", false
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(base, v)
	}
	return filepath.Clean(v), true
}

// leavesFolder judges a path of an include entry: written relative and
// climbing out (as escapeGuard judges include paths), or resolved to a
// place outside the stack folder.
func leavesFolder(dir, written, resolved string) bool {
	if !filepath.IsAbs(written) && !strings.Contains(written, "$") {
		if clean := filepath.Clean(written); clean == ".." || strings.HasPrefix(clean, "../") {
			return true
		}
	}
	return !policy.Within(dir, resolved)
}
