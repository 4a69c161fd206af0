package stack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
)

// Limits on what a stack folder may hold, so a hostile or mistaken commit
// cannot make the loader read without bound: compose-go reads whole files
// into memory, several times over.
const (
	// MaxFileBytes bounds each file the loader reads: compose files, .env,
	// env_file and label_file files, included and extended files.
	MaxFileBytes = 1 << 20
	// MaxObjectBytes bounds each file of a secret or config (file:), which
	// the daemon reads to decrypt it and to hash it, and the engine binds
	// into the container. A config may be bigger than a compose file (a
	// certificate bundle, a dashboard, a small database: a few MiB); 8 MiB
	// leaves room for that and keeps what one such file costs the daemon
	// small. A SOPS-encrypted one is bounded further by decryption
	// (secrets.MaxFileSize).
	MaxObjectBytes = vocab.MaxFileObjectBytes
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
// allowed, and nothing in it may be a device, FIFO or socket (Git makes
// none; a folder judged by validate may hold one), so that every file the
// loader reads inside the folder is a regular one. Sizes, and the aliases
// of the files parsed as YAML, are checked where each file is read.
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
		rel, _ := filepath.Rel(root, p)
		if d.Type()&notAFile != 0 {
			return &Error{Stack: l.stack, File: l.rel(filepath.Join(dir, rel)), Msg: notRegularMsg}
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

// notAFile are the kinds of entry the loader never reads: reading a
// device such as /dev/zero never ends (its size says 0), and opening a
// FIFO waits for a writer.
const notAFile = fs.ModeDevice | fs.ModeCharDevice | fs.ModeNamedPipe | fs.ModeSocket | fs.ModeIrregular

const notRegularMsg = "not a regular file (a device, FIFO or socket): the loader reads only regular files"

// checkFile judges a file the loader, or the engine after it, will read,
// before anything opens it: it must be a regular file (not a device or a
// FIFO: Stat's size is 0 for /dev/zero) of at most limit bytes and, when
// it is parsed as YAML (whatever its name), its aliases must not expand
// it past MaxYAMLNodes. Whether it may lie outside the stack folder is the
// caller's check, which knows the key that names it. A missing file, or a
// folder, is left for the loader to report as compose does.
func (l *locator) checkFile(f string, limit int64, asYAML bool) error {
	st, err := os.Stat(f) // follows links: what is read is the target
	switch {
	case err != nil || st.IsDir():
		return nil
	case !st.Mode().IsRegular():
		return &Error{Stack: l.stack, File: l.shown(f), Msg: notRegularMsg}
	case st.Size() > limit:
		return &Error{Stack: l.stack, File: l.shown(f), Msg: fmt.Sprintf("file is %d bytes, over the limit of %d", st.Size(), limit)}
	case asYAML:
		return l.checkAliases(f, l.shown(f))
	}
	return nil
}

// checkFolder refuses a stack folder reached through a link that could
// leave the repository: binds into it would then count as "inside the
// stack" while they reach a host folder. A top-level stacks/ that is a
// link is refused, and so is a stack folder that is one, except the links
// the daemon's live view makes: an absolute link to <checkout>/stacks/<name>
// where neither stacks nor <name> of that checkout is a link in turn.
// Unlike the links inside a stack folder, policy.paths_outside_stack does
// not allow these: the stacks of a repository are its folders.
func (l *locator) checkFolder(repoDir, name string) error {
	stacks := filepath.Join(repoDir, "stacks")
	if err := notALink(l.stack, stacks, "stacks"); err != nil {
		return err
	}
	dir := filepath.Join(stacks, name)
	st, err := os.Lstat(dir)
	if err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return nil // a missing folder is for the caller to report
	}
	target, err := os.Readlink(dir)
	if err != nil {
		return fmt.Errorf("load stack %s: %w", name, err)
	}
	if !filepath.IsAbs(target) || filepath.Clean(target) != target || policy.Within(repoDir, target) ||
		filepath.Base(target) != name || filepath.Base(filepath.Dir(target)) != "stacks" {
		return &Error{Stack: l.stack, File: "stacks/" + name,
			Msg: fmt.Sprintf("a symlink, to %s: the stack folders must be folders of the repository", target)}
	}
	// The live view's link: what it points at must be the checkout's own
	// folders, not links its revision made.
	if err := notALink(l.stack, filepath.Dir(target), "stacks"); err != nil {
		return err
	}
	return notALink(l.stack, target, "stacks/"+name)
}

// notALink refuses p, named shown in the error, when it is a symlink.
func notALink(stack, p, shown string) error {
	st, err := os.Lstat(p)
	if err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	target, _ := os.Readlink(p)
	return &Error{Stack: stack, File: shown, Msg: fmt.Sprintf("a symlink, to %s: the stack folders must be folders of the repository", target)}
}

// checkPaths judges, after compose-go resolved them and before anything
// reads them, the files of project the daemon reads or the engine binds:
// env files, and the files of secrets and configs, must stay in the stack
// folder (unless allowed) and pass checkFile; build contexts must stay in
// the folder. Binds are host paths by intent and are the policy's
// (bind_paths).
func (l *locator) checkPaths(project *types.Project) error {
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		for i, ef := range svc.EnvFiles {
			if !l.allowOutside && !policy.Within(l.dir, ef.Path) {
				return l.atPath(fmt.Sprintf("services.%s.env_file.%d", name, i), outsideMsg(l.shown(ef.Path)))
			}
			if err := l.checkFile(ef.Path, MaxFileBytes, false); err != nil {
				return err
			}
		}
		if b := svc.Build; b != nil && !l.allowOutside && isLocalContext(b.Context) && !policy.Within(l.dir, b.Context) {
			return l.atPath(fmt.Sprintf("services.%s.build.context", name), outsideMsg(l.shown(b.Context)))
		}
	}
	check := func(kind, name, file string) error {
		if file == "" {
			return nil
		}
		if !l.allowOutside && !policy.Within(l.dir, file) {
			return l.atPath(kind+"."+name+".file", outsideMsg(l.shown(file)))
		}
		return l.checkFile(file, MaxObjectBytes, false)
	}
	// In name order, so that a stack with several such files always names
	// the same one.
	for _, name := range slices.Sorted(maps.Keys(project.Secrets)) {
		if err := check("secrets", name, project.Secrets[name].File); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(project.Configs)) {
		if err := check("configs", name, project.Configs[name].File); err != nil {
			return err
		}
	}
	return nil
}

// checkLabelFiles judges the label_file entries of a loaded model, which
// compose-go reads as it turns the model into a project, whatever the
// policy: they must stay in the stack folder (unless allowed) and pass
// checkFile. The paths are resolved already.
func (l *locator) checkLabelFiles(model map[string]any) error {
	services, _ := model["services"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(services)) {
		svc, _ := services[name].(map[string]any)
		var files []any
		switch v := svc["label_file"].(type) {
		case string:
			files = []any{v}
		case []any:
			files = v
		}
		for i, f := range files {
			p, _ := f.(string)
			if p == "" {
				continue
			}
			if !l.allowOutside && !policy.Within(l.dir, p) {
				return l.atPath(fmt.Sprintf("services.%s.label_file.%d", name, i), outsideMsg(l.shown(p)))
			}
			if err := l.checkFile(p, MaxFileBytes, false); err != nil {
				return err
			}
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

// fileGuard is a compose-go resource loader placed before its local one,
// which compose-go asks about every include and extends path before it
// reads the file: it takes the paths it must refuse, and leaves the others
// to the local loader, whose resolution it does not change. A path that
// leaves the stack folder is refused unless allowed; a relative one is
// judged as written ("../x" leaves), as the loader does not say which file
// it is relative to (an include of a subfolder that climbs back is refused
// too). A file checkFile refuses is refused too; for a relative path, that
// is the file at each folder it may be relative to (the project directory,
// the folders of the included files and their project directories).
type fileGuard struct {
	loc *locator
}

func (g fileGuard) Accept(p string) bool { return g.verdict(p) != nil }

func (g fileGuard) Load(_ context.Context, p string) (string, error) {
	if err := g.verdict(p); err != nil {
		return "", err
	}
	return "", fmt.Errorf("load stack %s: %s: judged twice, differently", g.loc.stack, p) // the files do not change under a load
}

func (g fileGuard) Dir(p string) string { return filepath.Dir(p) }

// verdict is the error that refuses the include or extends path p, or nil.
func (g fileGuard) verdict(p string) error {
	l := g.loc
	if strings.Contains(p, "://") {
		return nil // a remote resource: compose-go refuses those without a loader
	}
	if filepath.IsAbs(p) {
		if !l.allowOutside && !policy.Within(l.dir, p) {
			return &Error{Stack: l.stack, Msg: outsideMsg(p)}
		}
		return l.checkFile(p, MaxFileBytes, true)
	}
	if clean := filepath.Clean(p); !l.allowOutside && (clean == ".." || strings.HasPrefix(clean, "../")) {
		return &Error{Stack: l.stack, Msg: outsideMsg(p)}
	}
	for _, base := range l.bases {
		if err := l.checkFile(filepath.Join(base, p), MaxFileBytes, true); err != nil {
			return err
		}
	}
	return nil
}

// addBase notes a folder that relative include and extends paths may be
// resolved against.
func (l *locator) addBase(dir string) {
	if dir != "" && !slices.Contains(l.bases, dir) {
		l.bases = append(l.bases, dir)
	}
}

func outsideMsg(p string) string {
	return fmt.Sprintf("%s is outside the stack folder (%s)", p, ruleOutside)
}

// checkAliases refuses a YAML file (named rel in errors) whose aliases
// expand it past MaxYAMLNodes: compose-go expands aliases itself (its
// !reset/!override processor), past yaml.v3's own guard. Files over
// MaxFileBytes are left to checkFile; a file that does not parse is left
// to the loader, which says where.
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
// file. The included files and the include env files are judged by
// checkFile here (an included file is YAML whatever its name), and the
// folders relative include and extends paths may be resolved against are
// noted for fileGuard.
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
	if err := w.loc.checkFile(file, MaxFileBytes, true); err != nil {
		return err
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
				w.loc.addBase(inc.projectDir)
				for _, p := range inc.paths {
					w.loc.addBase(filepath.Dir(p))
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
	for _, f := range envFiles {
		if err := w.loc.checkFile(f, MaxFileBytes, false); err != nil {
			return inc, err // compose-go reads them while loading
		}
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
