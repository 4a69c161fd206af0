package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/consts"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/compose-spec/compose-go/v2/utils"

	"github.com/gitopsd/gitopsd/internal/policy"
)

// selection is what `docker compose` settles before it reads a compose
// file (cmd/compose/compose.go: toProjectOptions): which files, the
// project directory, the interpolation environment, and the profiles .env
// asks for.
type selection struct {
	files      []string      // absolute compose files, in merge order
	workingDir string        // the project directory: the first file's folder
	env        types.Mapping // the interpolation environment
	profiles   []string      // COMPOSE_PROFILES of .env, split; nil when unset
}

// selectionVars choose what a stack is made of. compose also takes them
// from the environment of the shell it runs in; gitopsd takes them from
// the stack's .env only, as one variable in the daemon's environment would
// otherwise change every stack on the host.
var selectionVars = []string{consts.ComposeFilePath, consts.ComposePathSeparator, consts.ComposeProfiles}

// selectFiles settles the stack's selection as compose does in the stack
// folder: the environment (gitopsd's variables, then the process's, then
// .env filling in what is unset), the files (COMPOSE_FILE of .env, else
// the default compose file; the host's overlay last), and then the .env of
// the project directory when that is another folder.
func (l *locator) selectFiles(dir string, host Host, allowOutside bool) (selection, error) {
	env := baseEnvironment(dir, host)
	if err := l.mergeDotEnv(env, filepath.Join(dir, ".env")); err != nil {
		return selection{}, err
	}
	files, err := l.composeFiles(dir, env, allowOutside)
	if err != nil {
		return selection{}, err
	}
	// Listed in COMPOSE_FILE already, it is merged where it is listed.
	if overlay := overlayFile(dir, host.Name); overlay != "" && !slices.Contains(files, overlay) {
		files = append(files, overlay)
	}
	for _, f := range files {
		if err := l.checkFile(f, MaxFileBytes, true); err != nil {
			return selection{}, err
		}
	}
	// compose takes the first file's folder as the project directory and
	// reads its .env as well (filling in what is still unset).
	workingDir := filepath.Dir(files[0])
	if workingDir != dir {
		if err := l.mergeDotEnv(env, filepath.Join(workingDir, ".env")); err != nil {
			return selection{}, err
		}
	}
	return selection{files: files, workingDir: workingDir, env: env, profiles: composeProfiles(env)}, nil
}

// baseEnvironment is the interpolation environment before any .env:
// gitopsd's variables first, so that the process environment (which only
// fills in what is unset) cannot override them. A shell in the stack
// folder has PWD set to it; the daemon's own working directory means
// nothing to a stack.
func baseEnvironment(dir string, host Host) types.Mapping {
	env := types.Mapping(utils.GetAsEqualsMap(HostEnv(host)))
	env["PWD"] = dir
	for k, v := range utils.GetAsEqualsMap(os.Environ()) {
		if _, set := env[k]; !set && !slices.Contains(selectionVars, k) {
			env[k] = v
		}
	}
	return env
}

// mergeDotEnv reads a .env file, if there is one, into env where env has
// no value yet, as compose's WithDotEnv does. The file's own references
// see env.
func (l *locator) mergeDotEnv(env types.Mapping, file string) error {
	st, err := os.Stat(file)
	if err != nil || st.IsDir() {
		return nil // compose skips a missing .env, and one that is a folder
	}
	if err := l.checkFile(file, MaxFileBytes, false); err != nil {
		return err
	}
	values, err := dotenv.GetEnvFromFile(env, []string{file})
	if err != nil {
		return l.locate(err)
	}
	env.Merge(values)
	return nil
}

// MaxComposeFiles bounds the files COMPOSE_FILE may name: compose-go loads
// a file named twice twice, so a .env repeating one name could otherwise
// make loading cost what the .env's size allows.
const MaxComposeFiles = 100

const noComposeFile = "no compose file (compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml, or COMPOSE_FILE in .env)"

// composeFiles are the stack's compose files before the host's overlay:
// those COMPOSE_FILE names (relative to the stack folder, split by
// COMPOSE_PATH_SEPARATOR, default ":"), else the default compose file.
func (l *locator) composeFiles(dir string, env types.Mapping, allowOutside bool) ([]string, error) {
	value, set := env[consts.ComposeFilePath]
	if !set {
		main := composeFile(dir)
		if main == "" {
			return nil, &Error{Stack: l.stack, Msg: noComposeFile}
		}
		return []string{main}, nil
	}
	sep := env[consts.ComposePathSeparator]
	if sep == "" {
		sep = string(os.PathListSeparator)
	}
	names := strings.Split(value, sep)
	if len(names) > MaxComposeFiles {
		return nil, l.inDotEnv(dir, fmt.Sprintf("COMPOSE_FILE names %d files, over the limit of %d", len(names), MaxComposeFiles))
	}
	var files []string
	for _, name := range names {
		f, err := l.namedFile(dir, name, allowOutside)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// namedFile checks one entry of COMPOSE_FILE and makes it absolute.
func (l *locator) namedFile(dir, name string, allowOutside bool) (string, error) {
	if strings.TrimSpace(name) == "" {
		return "", l.inDotEnv(dir, "COMPOSE_FILE has an empty entry")
	}
	f := name
	if !filepath.IsAbs(f) {
		f = filepath.Join(dir, f) // compose makes it absolute from where it runs: the stack folder
	}
	if !allowOutside && !policy.Within(dir, f) {
		return "", l.inDotEnv(dir, fmt.Sprintf("COMPOSE_FILE names %s, outside the stack folder (%s)", name, ruleOutside))
	}
	st, err := os.Stat(f)
	switch {
	case err != nil:
		return "", l.inDotEnv(dir, fmt.Sprintf("COMPOSE_FILE names %s, which does not exist", name))
	case st.IsDir():
		return "", l.inDotEnv(dir, fmt.Sprintf("COMPOSE_FILE names %s, which is a folder", name))
	}
	return f, nil
}

// inDotEnv is an *Error at the line of the stack's .env that sets
// COMPOSE_FILE.
func (l *locator) inDotEnv(dir, msg string) *Error {
	dotEnv := filepath.Join(dir, ".env")
	e := &Error{Stack: l.stack, File: l.rel(dotEnv), Msg: msg}
	if _, line := findText([]string{dotEnv}, composeFileLine); line > 0 {
		e.Line = line
	}
	return e
}

// composeProfiles reads COMPOSE_PROFILES as compose's WithDefaultProfiles
// does: comma-separated, each trimmed.
func composeProfiles(env types.Mapping) []string {
	value, set := env[consts.ComposeProfiles]
	if !set {
		return nil
	}
	var profiles []string
	for _, p := range strings.Split(value, ",") {
		profiles = append(profiles, strings.TrimSpace(p))
	}
	return profiles
}

// declaresProfiles says whether one of the files sets x-gitopsd.profiles.
// Only these files can: compose-go takes no extension from included files.
func declaresProfiles(files []string) bool {
	for _, f := range files {
		for _, doc := range parseFile(f) {
			if len(under(doc, []string{"x-gitopsd", "profiles"})) > 0 {
				return true
			}
		}
	}
	return false
}
