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
	"github.com/compose-spec/compose-go/v2/types"
)

// stackName is what compose accepts as a project name.
var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Discover returns the sorted names of the folders (or symlinks to folders)
// under repoDir/stacks that hold a compose file. A repository without a
// stacks/ folder has no stacks.
func Discover(repoDir string) ([]string, error) {
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
		if composeFile(dir) != "" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
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
// `docker compose -p <name> -f <file> [-f compose.<host>.yaml] up` would,
// run in that folder. Errors a user can fix in the repository are *Error.
func Load(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
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
	main := composeFile(dir)
	if main == "" {
		return nil, &Error{Stack: name, Msg: "no compose file (compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml)"}
	}
	files := []string{main}
	if overlay := overlayFile(dir, host.Name); overlay != "" {
		files = append(files, overlay)
	}
	loc := &locator{stack: name, repoDir: repoDir, files: files}

	// The options of `docker compose up` (cmd/compose/compose.go:
	// WithServices and toProjectOptions), minus the file lookups made moot
	// by explicit files and COMPOSE_PROFILES (no profile is ever active).
	// gitopsd's variables are set first, so the process environment (which
	// only fills what is unset) cannot override them, and .env fills in
	// only what neither set.
	opts, err := cli.NewProjectOptions(files,
		cli.WithResolvedPaths(true),
		cli.WithoutEnvironmentResolution,
		cli.WithWorkingDirectory(dir),
		cli.WithEnv(HostEnv(host)),
		// A shell in the stack folder has PWD set to it; the daemon's own
		// working directory means nothing to a stack.
		cli.WithEnv([]string{"PWD=" + dir}),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithName(name),
	)
	if err != nil {
		return nil, loc.locate(err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("load stack %s: %w", name, ctx.Err())
		}
		return nil, loc.locate(err)
	}
	project, err = normalize(project, name)
	if err != nil {
		return nil, loc.locate(err)
	}

	options, err := parseOptions(project.Extensions["x-gitopsd"])
	if err != nil {
		var oe *optionError
		if errors.As(err, &oe) {
			return nil, loc.atPath(oe.keyPath(), oe.msg)
		}
		return nil, &Error{Stack: name, File: loc.rel(main), Msg: err.Error()}
	}
	return &Stack{Name: name, Dir: dir, Files: files, Project: project, Options: options}, nil
}

// normalize applies what the compose CLI does to a loaded project before
// `up` hashes its services, in the same order: enable the selected
// services (none named: no profile), drop unused resources, resolve the
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
