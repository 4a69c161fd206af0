package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/compose-spec/compose-go/v2/utils"
)

// stackName is what compose accepts as a project name.
var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Discover returns the sorted names of the folders (or symlinks to folders)
// under repoDir/stacks that are stacks: that hold a compose file by one of
// compose's default names, or a .env that assigns COMPOSE_FILE. A
// repository without a stacks/ folder has no stacks.
//
// A .env naming files that do not exist still makes a stack: Load then
// reports it Invalid, which keeps its containers running, where not
// finding the stack at all would remove them over a typo.
//
// A stacks/ that is a symlink is an error: the stack folders must be the
// repository's own, or binds into them would count as inside a stack
// while they reach wherever the link points.
func Discover(repoDir string) ([]string, error) {
	if err := notALink("", filepath.Join(repoDir, "stacks"), "stacks"); err != nil {
		return nil, fmt.Errorf("read stacks folder: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(repoDir, "stacks"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stacks folder: %w", err)
	}
	var names []string
	for _, e := range entries {
		dir := filepath.Join(repoDir, "stacks", e.Name())
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue // os.Stat follows symlinks: the daemon's live view is made of them
		}
		if composeFile(dir) != "" || assignsComposeFile(filepath.Join(dir, ".env")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// composeFileLine matches the line of a .env that assigns COMPOSE_FILE.
var composeFileLine = regexp.MustCompile(`(?m)^[ \t]*(?:export[ \t]+)?COMPOSE_FILE[ \t]*[=:]`)

// assignsComposeFile says whether a .env file assigns COMPOSE_FILE. It
// reads the text, not the parsed file: a .env that does not parse must
// still make its folder a stack, so that Load can say what is wrong.
func assignsComposeFile(dotEnv string) bool {
	st, err := os.Stat(dotEnv)
	if err != nil || !st.Mode().IsRegular() || st.Size() > MaxFileBytes {
		return false
	}
	b, err := os.ReadFile(dotEnv)
	return err == nil && composeFileLine.Match(b)
}

// composeFile is the stack's main compose file, looked up in compose's order.
func composeFile(dir string) string {
	for _, name := range cli.DefaultFileNames {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && !st.IsDir() {
			return filepath.Join(dir, name)
		}
	}
	return ""
}

// overlayFile is the host's overlay compose.<host>.yaml (or .yml), if any.
func overlayFile(dir, host string) string {
	if host == "" {
		return ""
	}
	for _, ext := range []string{".yaml", ".yml"} {
		f := filepath.Join(dir, "compose."+host+ext)
		if st, err := os.Stat(f); err == nil && !st.IsDir() {
			return f
		}
	}
	return ""
}

// HostEnv is what gitopsd adds to the interpolation environment for host.
func HostEnv(host Host) []string {
	env := []string{"GITOPSD_HOST=" + host.Name}
	for k, v := range host.Labels {
		env = append(env, "GITOPSD_LABEL_"+envKey(k)+"="+v)
	}
	sort.Strings(env)
	return env
}

var nonAlnum = regexp.MustCompile(`[^A-Z0-9]`)

func envKey(label string) string {
	return nonAlnum.ReplaceAllString(strings.ToUpper(label), "_")
}

// Load loads the stack stacks/<name>/ of the checkout at repoDir as
// `docker compose -p <name> [--profile P] -f <file>... [-f compose.<host>.yaml] up`
// would, run in that folder. Errors a user can fix in the repository are *Error.
func Load(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return loadStack(ctx, repoDir, name, host, true, false)
}

// loadForAll is Load as LoadAll needs it: a stack whose compose files say,
// as written, that it runs on other hosts is loaded no further, so that
// this host reads none of its other files (env, label, extended and
// included files, secrets); it comes back with its targets and no
// Project.
func loadForAll(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return loadStack(ctx, repoDir, name, host, false, false)
}

// loadStack loads a stack whole or as loadForAll does; composeValidates
// leaves the validation of the compose files to compose-go alone (see
// schema.go), for the tests that hold the fast path to it.
func loadStack(ctx context.Context, repoDir, name string, host Host, whole, composeValidates bool) (st *Stack, err error) {
	// A crafted compose file must cost its stack, never the daemon: a panic
	// anywhere in loading (compose-go's or ours) is that stack's error.
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, &Error{Stack: name, Msg: fmt.Sprintf("the loader failed on this stack (a bug: please report it): %v", r)}
		}
	}()
	return load(ctx, repoDir, name, host, whole, composeValidates)
}

func load(ctx context.Context, repoDir, name string, host Host, whole, composeValidates bool) (*Stack, error) {
	if !stackName.MatchString(name) {
		return nil, &Error{Stack: name, Msg: fmt.Sprintf("invalid stack name %q: use lowercase letters, digits, '-' and '_', starting with a letter or digit", name)}
	}
	repoDir, err := filepath.Abs(repoDir)
	if err != nil {
		return nil, fmt.Errorf("load stack %s: %w", name, err)
	}
	// Not resolved through symlinks: the daemon's live view links each
	// stack to its revision's checkout, and compose's working_dir label
	// and resolved paths must not change with the revision.
	dir := filepath.Join(repoDir, "stacks", name)
	rules := host.policy()
	loc := &locator{stack: name, repoDir: repoDir, redactor: host.Redactor, dir: dir, allowOutside: rules.PathsOutsideStack}
	if err := loc.checkFolder(repoDir, name); err != nil {
		return nil, err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, &Error{Stack: name, Msg: noComposeFile}
	}
	if err := loc.preflight(dir, rules.PathsOutsideStack); err != nil {
		return nil, err
	}
	sel, err := loc.selectFiles(dir, host, rules.PathsOutsideStack)
	if err != nil {
		return nil, err
	}
	loc.files = sel.files
	if !whole {
		if targets, ok := declaredTargets(sel.files, sel.env); ok && !targets.Match(host) {
			return &Stack{Name: name, Dir: dir, Files: sel.files, Options: Options{Targets: targets, Drift: DriftHeal}}, nil
		}
	}
	loc.addBase(sel.workingDir)
	loc.addBase(dir)
	if err := loc.checkIncludes(dir, sel, rules.PathsOutsideStack); err != nil {
		return nil, err
	}
	project, options, err := loading{loc: loc, name: name, dir: dir, sel: sel, composeValidates: composeValidates}.project(ctx)
	if err != nil {
		return nil, err
	}
	// Before env files are read: they are read by normalize.
	if err := loc.checkPaths(project); err != nil {
		return nil, err
	}
	if err := loc.checkBuilds(project); err != nil {
		return nil, err
	}
	if err := loc.checkPullPolicies(project); err != nil {
		return nil, err
	}
	if err := loc.checkCreatable(project); err != nil {
		return nil, err
	}
	// What only a host the stack runs on must have (its keys) or allow
	// (its policy) is not asked of the others.
	targeted := options.Targets.Match(host)
	if targeted {
		if err := loc.decryptEnvFiles(project, host.Identities, host.SkipSecrets); err != nil {
			return nil, err
		}
		if err := loc.decryptFileObjects(project, host.Identities, host.SkipSecrets); err != nil {
			return nil, err
		}
	}
	active := activeProfiles(project.Profiles)
	project, err = normalize(project, name)
	if err != nil {
		return nil, loc.locate(err)
	}
	if targeted {
		if vs := rules.Check(project, dir); len(vs) > 0 {
			return nil, loc.atPath(vs[0].KeyPath, vs[0].Error())
		}
	}
	return &Stack{Name: name, Dir: dir, Files: sel.files, Project: project, Options: options, Profiles: active}, nil
}

// loading is one stack on its way through compose-go: its folder and
// what selectFiles settled.
type loading struct {
	loc       *locator
	name, dir string
	sel       selection
	// composeValidates: compose-go alone validates the files.
	composeValidates bool
	// docs are the compose files as schema.go judged them; nil: compose-go
	// validates (as the tests that hold the fast path to it ask).
	docs *documents
}

// project runs compose-go on the selected files with the active profiles:
// x-gitopsd.profiles when the files set it, else COMPOSE_PROFILES of .env.
// x-gitopsd is part of what is being loaded, so a stack that sets it is
// loaded twice: first its model, for the profiles, then the project with
// them (compose-go applies profiles while loading, and its checks, such as
// depends_on naming an inactive service, depend on them).
func (g loading) project(ctx context.Context) (*types.Project, Options, error) {
	if !g.composeValidates {
		g.docs = g.readDocuments(g.loaderOptions())
	}
	profiles := g.sel.profiles
	if declaresProfiles(g.sel.files) {
		model, err := g.model(ctx)
		if err != nil {
			return nil, Options{}, err
		}
		options, err := g.loc.options(model["x-gitopsd"])
		if err != nil {
			return nil, Options{}, err
		}
		if options.Profiles != nil {
			profiles = options.Profiles
		}
	}
	project, options, err := g.withProfiles(ctx, profiles)
	if err != nil || options.Profiles == nil || slices.Equal(options.Profiles, profiles) {
		return project, options, err
	}
	// The look for x-gitopsd.profiles in the YAML as written missed it
	// (behind a merge key, say): the loaded project has the last word.
	return g.withProfiles(ctx, options.Profiles)
}

// withProfiles loads the project with these profiles active, as `docker
// compose up` would with the files, project directory and environment
// selectFiles settled, and parses its x-gitopsd. It does in two steps what
// compose-go's cli.ProjectOptions.LoadProject does in one, the model and
// then the project: making the project reads the label files, which must
// be judged first.
func (g loading) withProfiles(ctx context.Context, profiles []string) (*types.Project, Options, error) {
	details := g.details()
	opts := append(g.loaderOptions(), loader.WithProfiles(profiles), func(o *loader.Options) {
		o.SkipResolveEnvironment = true // normalize resolves it, once the env files are judged
	})
	model, err := g.loadModel(ctx, opts)
	if err != nil {
		return nil, Options{}, g.loc.loadError(ctx, err)
	}
	if err := g.loc.checkLabelFiles(model); err != nil {
		return nil, Options{}, err
	}
	project, err := loader.ModelToProject(model, loader.ToOptions(&details, opts), details)
	if err != nil {
		return nil, Options{}, g.loc.loadError(ctx, err)
	}
	project.ComposeFiles = slices.Clone(g.sel.files)
	options, err := g.loc.options(project.Extensions["x-gitopsd"])
	if err != nil {
		return nil, Options{}, err
	}
	return project, options, nil
}

// model loads the stack's merged and interpolated model, before profiles
// apply.
func (g loading) model(ctx context.Context) (map[string]any, error) {
	model, err := g.loadModel(ctx, g.loaderOptions())
	if err != nil {
		return nil, g.loc.loadError(ctx, err)
	}
	return model, nil
}

// details are the files, project directory and interpolation environment
// selectFiles settled, as compose-go takes them.
func (g loading) details() types.ConfigDetails {
	return types.ConfigDetails{WorkingDir: g.sel.workingDir, ConfigFiles: types.ToConfigFiles(g.sel.files), Environment: g.sel.env.Clone()}
}

// loaderOptions are the options compose-go's cli.ProjectOptions gives its
// loader for `docker compose -p <name> up` (paths resolved, the name as
// with -p, Windows paths as COMPOSE_CONVERT_WINDOWS_PATHS says), with
// fileGuard in front of the local resource loader.
func (g loading) loaderOptions() []func(*loader.Options) {
	return []func(*loader.Options){func(o *loader.Options) {
		o.ResolvePaths = true
		o.SetProjectName(g.name, true)
		o.ConvertWindowsPaths = utils.StringToBool(g.sel.env["COMPOSE_CONVERT_WINDOWS_PATHS"])
		o.ResourceLoaders = append(o.ResourceLoaders, fileGuard{loc: g.loc})
	}}
}

// options parses x-gitopsd, pinning a bad value to its line.
func (l *locator) options(raw any) (Options, error) {
	options, err := parseOptions(raw)
	if err == nil {
		return options, nil
	}
	var oe *optionError
	if errors.As(err, &oe) {
		return options, l.atPath(oe.keyPath(), oe.msg)
	}
	return options, &Error{Stack: l.stack, File: l.rel(l.files[0]), Msg: err.Error()}
}

// activeProfiles are the profiles a project was loaded with, as a user
// would list them.
func activeProfiles(profiles []string) []string {
	var out []string
	for _, p := range profiles {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loadError is the error of a compose-go load: the context's, ours (from
// fileGuard), or compose-go's, located.
func (l *locator) loadError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("load stack %s: %w", l.stack, ctx.Err())
	}
	var e *Error
	if errors.As(err, &e) {
		l.placeGuardError(e)
		return e
	}
	return l.locate(err)
}

// placeGuardError gives the error of fileGuard, which is not told which
// file asked for the path, the file and line that name it.
func (l *locator) placeGuardError(e *Error) {
	p, isGuard := strings.CutSuffix(e.Msg, outsideMsg(""))
	if e.File != "" || !isGuard {
		return
	}
	if f, line := findValue(l.candidates(""), "", func(v string) bool { return v == p }); line > 0 {
		e.File, e.Line = l.rel(f), line
	}
}

// normalize applies what the compose CLI does to a loaded project before
// `up` hashes its services, in the same order: enable the selected
// services (none named: only the active profiles), drop unused resources, resolve the
// service environment (env_file merged into environment, then dropped),
// then the platform defaults of createOptions.Apply.
func normalize(project *types.Project, name string) (*types.Project, error) {
	// A top-level name: never renames the stack, as with -p.
	project.Name = name
	project, err := project.WithServicesEnabled()
	if err != nil {
		return nil, err
	}
	project = project.WithoutUnnecessaryResources()
	project, err = project.WithServicesEnvironmentResolved(true)
	if err != nil {
		return nil, err
	}
	if err := applyPlatforms(project); err != nil {
		return nil, err
	}
	return project, nil
}

// applyPlatforms follows compose's applyPlatforms(project, true), run by
// up and create: a service that builds takes DOCKER_DEFAULT_PLATFORM as
// its platform unless it names one, and builds for that one platform.
// The platform is part of the config hash.
func applyPlatforms(project *types.Project) error {
	defaultPlatform := project.Environment["DOCKER_DEFAULT_PLATFORM"]
	for name, svc := range project.Services {
		if svc.Build == nil {
			continue
		}
		build := *svc.Build
		if defaultPlatform != "" && svc.Platform == "" {
			if len(build.Platforms) > 0 && !slices.Contains(build.Platforms, defaultPlatform) {
				return fmt.Errorf("service %q build.platforms does not support value set by DOCKER_DEFAULT_PLATFORM: %s", name, defaultPlatform)
			}
			svc.Platform = defaultPlatform
		}
		if svc.Platform != "" {
			if len(build.Platforms) > 0 && !slices.Contains(build.Platforms, svc.Platform) {
				return fmt.Errorf("service %q build configuration does not support platform: %s", name, svc.Platform)
			}
			build.Platforms = []string{svc.Platform}
		}
		if len(build.Platforms) > 1 {
			build.Platforms = nil // the builder decides
		}
		svc.Build = &build
		project.Services[name] = svc
	}
	return nil
}

// ServiceHash is the com.docker.compose.config-hash of a service, computed as
// docker compose v2.40.3 computes it (pkg/compose/hash.go): the JSON of the
// service without the fields that may change without recreating a container
// (build, pull policy, scale, replicas, depends_on, profiles), hashed with
// SHA-256. The service must be as Load left it, except that compose, just
// before hashing (convergence.resolveServiceReferences), rewrites
// network_mode, ipc and pid "service:<svc>" to "container:<id>" and each
// volumes_from entry "<svc>[:mode]" to "<id>" and "container:<name>[:mode]"
// to "<name>", where <id> is the container of <svc> whose name sorts
// first (Containers.sorted, by canonical name); a caller with
// such a service must do the same for its hash to match.
func ServiceHash(svc types.ServiceConfig) (string, error) {
	svc.Build = nil
	svc.PullPolicy = ""
	svc.Scale = nil
	if svc.Deploy != nil {
		deploy := *svc.Deploy // the caller's project must keep its replicas
		deploy.Replicas = nil
		svc.Deploy = &deploy
	}
	svc.DependsOn = nil
	svc.Profiles = nil
	b, err := json.Marshal(svc)
	if err != nil {
		return "", fmt.Errorf("hash service %s: %w", svc.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
