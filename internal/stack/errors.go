package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/secrets"
)

// compose-go reports problems in a handful of shapes. These pick out the
// file, line, key path or value they name so the error can point at the
// line a human has to fix.
var (
	fileInError    = regexp.MustCompile(`(?:failed to parse|validating) (/[^:]+):\s*`)
	yamlSyntax     = regexp.MustCompile(`^yaml: line (\d+): `)
	yamlDecoding   = regexp.MustCompile(`^(?:yaml: unmarshal errors: )?line (\d+): `)
	dotenvError    = regexp.MustCompile(`failed to read (/[^:]+): line (\d+): `)
	validatingKey  = regexp.MustCompile(`^(\S+ )?additional properties '([^']+)' not allowed`)
	interpolating  = regexp.MustCompile(`error while interpolating (\S+): `)
	badFormat      = regexp.MustCompile(`^invalid interpolation format for (\S+)\. .* \$\. (.*)$`)
	decodingKey    = regexp.MustCompile(`'([^']+)' `)
	serviceNamed   = regexp.MustCompile(`service "([^"]+)"`)
	undefinedRef   = regexp.MustCompile(`(?:depends on undefined service "([^"]+)"|refers to undefined (network|volume|config|secret|model|build secret) (\S+?)(?::|$))`)
	missingVar     = regexp.MustCompile(`required variable (\w+) is missing`)
	cycle          = regexp.MustCompile(`^dependency cycle detected: ([^ ]+) -> `)
	missingFile    = regexp.MustCompile(`(?:open|env file|stat) (/\S+?):? (?:not found|no such file)`)
	unknownAnchor  = regexp.MustCompile(`unknown anchor '([^']+)' referenced`)
	badPortSpec    = regexp.MustCompile(`^invalid (?:containerPort|hostPort|proto|IP address|ip address|port|range)[^:]*: (\S+)`)
	dotenvQuoted   = regexp.MustCompile(`^unterminated quoted value `)
	dotenvCharName = regexp.MustCompile(`^(unexpected character "[^"]*" in variable name) `)
)

// locator turns the load errors of one stack into *Error values.
type locator struct {
	stack   string
	repoDir string   // absolute repository root
	files   []string // absolute compose files, in merge order
	// redactor learns the values decrypted for the stack (nil: nobody).
	redactor *secrets.Redactor
	// What the guards judge files by: the stack folder, whether the
	// host's policy lets a stack read outside it, and the folders that
	// relative include and extends paths may be resolved against.
	dir          string
	allowOutside bool
	bases        []string
}

// rel names a file relative to the repository, as a user sees it in Git.
func (l *locator) rel(f string) string {
	r, err := filepath.Rel(l.repoDir, f)
	if err != nil {
		return f
	}
	return filepath.ToSlash(r)
}

// locate turns a compose-go load error into an *Error naming the file and,
// wherever it can be found, the line.
func (l *locator) locate(err error) *Error {
	raw := err.Error()
	// .env and env_file errors are the only ones whose text can quote a
	// secret, so they get their own, terse message.
	if m := dotenvError.FindStringSubmatchIndex(raw); m != nil {
		return l.dotenv(raw[m[2]:m[3]], raw[m[4]:m[5]], raw[m[1]:])
	}

	msg := strings.Join(strings.Fields(raw), " ")
	named := ""
	if m := fileInError.FindStringSubmatch(msg); m != nil {
		named = m[1]
		msg = strings.Replace(msg, m[0], "", 1)
	}
	// errdefs' "invalid compose project" adds nothing for a human.
	msg = strings.TrimSuffix(strings.TrimPrefix(msg, "yaml: "), ": invalid compose project")
	e := &Error{Stack: l.stack, Msg: msg}
	if named != "" {
		e.File = l.rel(named)
	}
	at := func(f string, line int) *Error {
		if line > 0 {
			e.File, e.Line = l.rel(f), line
		}
		return e
	}
	defer func() {
		// Absolute checkout paths change with every revision; users know
		// their files by the path in the repository.
		e.Msg = strings.ReplaceAll(e.Msg, l.repoDir+string(filepath.Separator), "")
		if e.File == "" && len(l.files) > 0 {
			e.File = l.rel(l.files[0])
		}
	}()
	search := l.candidates(named)
	fileOrMain := named
	if fileOrMain == "" && len(l.files) > 0 {
		fileOrMain = l.files[0]
	}

	// A YAML syntax or decoding error carries its own line.
	if m := yamlSyntax.FindStringSubmatch("yaml: " + msg); m != nil {
		reported, _ := strconv.Atoi(m[1])
		e.Msg = msg[len(m[0])-len("yaml: "):]
		return at(fileOrMain, syntaxLine(fileOrMain, reported))
	}
	if m := yamlDecoding.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		e.Msg = msg[len(m[0]):]
		return at(fileOrMain, line)
	}

	// A missing required variable is best shown where it is used.
	if m := missingVar.FindStringSubmatch(msg); m != nil {
		if f, line := findVariable(search, m[1]); line > 0 {
			return at(f, line)
		}
	}
	if m := badFormat.FindStringSubmatch(msg); m != nil {
		value := m[2]
		e.Msg = "invalid interpolation format for " + m[1] + ": " + value + " (write $$ for a literal $)"
		if f, line := findValue(search, m[1], func(v string) bool { return v == value }); line > 0 {
			return at(f, line)
		}
	}
	if m, named := undefinedRef.FindStringSubmatch(msg), serviceNamed.FindStringSubmatch(msg); m != nil && named != nil {
		svc := named[1]
		key, ref := "depends_on", m[1]
		if m[2] != "" {
			key, ref = m[2]+"s", m[3]
			if m[2] == "build secret" {
				key = "build.secrets"
			}
		}
		keyPath := "services." + svc + "." + key
		if key == "depends_on" {
			e.Msg += inactiveProfileHint(search, ref)
		}
		if f, line := findValue(search, keyPath, refersTo(ref)); line > 0 {
			return at(f, line)
		}
		if f, line := findPath(search, keyPath); line > 0 {
			return at(f, line)
		}
	}
	if m := missingFile.FindStringSubmatch(msg); m != nil {
		target := m[1]
		// "env file X not found: stat X: no such file or directory"
		if i := strings.Index(e.Msg, " not found: stat "); i > 0 {
			e.Msg = e.Msg[:i+len(" not found")]
		}
		if f, line := findValue(search, "", func(v string) bool { return l.samePath(v, target) }); line > 0 {
			return at(f, line)
		}
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if f, line := findText(search, regexp.MustCompile(`\*`+regexp.QuoteMeta(m[1])+`\b`)); line > 0 {
			return at(f, line)
		}
	}
	if m := badPortSpec.FindStringSubmatch(msg); m != nil {
		token := m[1]
		if f, line := findValue(search, "services.*.ports", func(v string) bool { return strings.Contains(v, token) }); line > 0 {
			return at(f, line)
		}
	}

	// Otherwise find the key path the error names, and its line.
	var paths []string
	switch {
	case validatingKey.MatchString(msg):
		m := validatingKey.FindStringSubmatch(msg)
		parent := strings.TrimSpace(m[1])
		if parent == "" || parent == "(root)" {
			paths = []string{m[2]}
		} else {
			paths = []string{parent + "." + m[2], parent}
		}
	case interpolating.MatchString(msg):
		paths = []string{interpolating.FindStringSubmatch(msg)[1]}
	case cycle.MatchString(msg):
		paths = []string{"services." + cycle.FindStringSubmatch(msg)[1] + ".depends_on"}
	case strings.HasPrefix(msg, "decoding failed") && decodingKey.MatchString(msg):
		key := decodingKey.FindStringSubmatch(msg)[1]
		paths = []string{strings.NewReplacer("[", ".", "]", "").Replace(key)}
		e.Msg = msg[strings.Index(msg, "'"):]
	case serviceNamed.MatchString(msg):
		paths = []string{"services." + serviceNamed.FindStringSubmatch(msg)[1]}
	default:
		// Schema errors start with the key path: "services.web.ports.0 ...".
		if first, _, ok := strings.Cut(msg, " "); ok && strings.Contains(first, ".") {
			paths = []string{strings.TrimSuffix(first, ":")}
		}
	}
	for _, p := range paths {
		if f, line := findPath(search, p); line > 0 {
			return at(f, line)
		}
	}
	return e
}

// atPath is an *Error for a problem at a key path of the merged files.
func (l *locator) atPath(keyPath, msg string) *Error {
	e := &Error{Stack: l.stack, Msg: keyPath + ": " + msg}
	if len(l.files) > 0 {
		e.File = l.rel(l.files[0])
	}
	if f, line := findPath(l.candidates(""), keyPath); line > 0 {
		e.File, e.Line = l.rel(f), line
	}
	return e
}

// dotenv is the error for a .env or env_file that does not parse. The
// parser's own text would quote the rest of the file, secrets included.
func (l *locator) dotenv(file, lineText, rest string) *Error {
	line, _ := strconv.Atoi(lineText)
	e := &Error{Stack: l.stack, File: l.rel(file), Line: line}
	switch {
	case dotenvQuoted.MatchString(rest):
		e.Msg = "unterminated quoted value"
		// The parser counts lines up to where it gave up, the end of the
		// file; the quote opened on the first line of the value it quotes.
		value := strings.TrimPrefix(rest, dotenvQuoted.FindString(rest))
		first, _, _ := strings.Cut(value, "\n")
		if b, err := os.ReadFile(file); err == nil && first != "" {
			for i, text := range strings.Split(string(b), "\n") {
				if strings.Contains(text, first) {
					e.Line = i + 1
					break
				}
			}
		}
	case dotenvCharName.MatchString(rest):
		e.Msg = dotenvCharName.FindStringSubmatch(rest)[1]
	default:
		// The parser's other messages name the problem, not the value.
		e.Msg = strings.Join(strings.Fields(rest), " ")
	}
	return e
}

// inactiveProfileHint explains an "undefined" dependency that the files do
// define, under profiles that are not active: compose-go drops such a
// service before it checks depends_on, as `docker compose up` does.
func inactiveProfileHint(files []string, service string) string {
	for _, f := range files {
		for _, doc := range parseFile(f) {
			for _, n := range under(doc, []string{"services", service, "profiles"}) {
				var names []string
				for _, p := range scalars(n) {
					names = append(names, p.Value)
				}
				if len(names) == 0 {
					continue
				}
				return fmt.Sprintf(" (%s is only in profiles [%s], none of them active: activate one with x-gitopsd.profiles or COMPOSE_PROFILES in .env, or make the dependency required: false)", service, strings.Join(names, ", "))
			}
		}
	}
	return ""
}

// samePath says whether a value in a compose file names the file target,
// relative to the file's folder or absolutely.
func (l *locator) samePath(value, target string) bool {
	if value == "" {
		return false
	}
	if filepath.IsAbs(value) {
		return filepath.Clean(value) == target
	}
	for _, f := range l.files {
		if filepath.Join(filepath.Dir(f), value) == target {
			return true
		}
	}
	return false
}

// candidates are the files to search: the one named by the error first,
// then the later files before the earlier (later files override).
func (l *locator) candidates(named string) []string {
	var out []string
	if named != "" {
		out = append(out, named)
	}
	for i := len(l.files) - 1; i >= 0; i-- {
		if l.files[i] != named {
			out = append(out, l.files[i])
		}
	}
	return out
}

// refersTo matches the entry of a reference list (depends_on, volumes,
// networks, secrets, configs) that names ref, in short or long syntax.
func refersTo(ref string) func(string) bool {
	return func(v string) bool {
		return v == ref || strings.HasPrefix(v, ref+":")
	}
}

// syntaxLine finds the line of a YAML syntax error. For parser errors
// yaml.v3 reports where the enclosing block began (0-based, so one line
// early), not the fault. The fault is on the first line at which the file,
// cut after that line, fails with the very same error: the parser reads a
// stream and fails as soon as it meets it.
func syntaxLine(file string, reported int) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return reported
	}
	full := parseAll(b)
	if full == nil {
		return reported
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > 5000 {
		return reported
	}
	var prefix []byte
	for i, line := range lines {
		prefix = append(prefix, line...)
		if err := parseAll(prefix); err != nil && err.Error() == full.Error() {
			return i + 1
		}
	}
	return reported
}

// parseAll parses every document of a YAML stream and returns the error.
func parseAll(b []byte) error {
	_, err := parseDocs(b)
	return err
}

func parseDocs(b []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, &doc)
	}
}

func parseFile(f string) []*yaml.Node {
	b, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	docs, _ := parseDocs(b)
	return docs
}

// findPath returns the file holding the deepest part of a dotted key path
// ("services.web.ports.[].target") and that key's line.
func findPath(files []string, keyPath string) (string, int) {
	segments := strings.Split(keyPath, ".")
	bestFile, bestLine, bestDepth := "", 0, 0
	for _, f := range files {
		for _, doc := range parseFile(f) {
			line, depth := walk(doc, segments)
			if depth > bestDepth {
				bestFile, bestLine, bestDepth = f, line, depth
			}
		}
	}
	return bestFile, bestLine
}

// walk follows segments down a YAML node tree and returns the line of the
// deepest key found and how many segments matched. "[]" and "*" match any
// item of a sequence or mapping; numbers index sequences.
func walk(n *yaml.Node, segments []string) (line, depth int) {
	n = resolve(n)
	if n == nil || len(segments) == 0 {
		return 0, 0
	}
	seg := segments[0]
	bestLine, bestDepth := 0, 0
	// consider follows one candidate child and says whether the whole
	// path was found below it, which ends the search.
	consider := func(key, value *yaml.Node) bool {
		l, d := walk(value, segments[1:])
		if d > 0 {
			d++
		} else {
			l, d = key.Line, 1
		}
		if d > bestDepth {
			bestLine, bestDepth = l, d
		}
		return d == len(segments)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if (seg == "*" || n.Content[i].Value == seg) && consider(n.Content[i], n.Content[i+1]) {
				break
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			consider(n.Content[i], n.Content[i])
		} else if seg == "[]" || seg == "*" {
			for _, item := range n.Content {
				if consider(item, item) {
					break
				}
			}
		}
	}
	return bestLine, bestDepth
}

// resolve skips document and alias nodes.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return nil
}

// findValue returns the first scalar (mapping keys included) under the key
// path (anywhere, if keyPath is empty) that matches.
func findValue(files []string, keyPath string, match func(string) bool) (string, int) {
	var segments []string
	if keyPath != "" {
		segments = strings.Split(keyPath, ".")
	}
	for _, f := range files {
		for _, doc := range parseFile(f) {
			for _, n := range under(doc, segments) {
				if line := firstScalar(n, match); line > 0 {
					return f, line
				}
			}
		}
	}
	return "", 0
}

// under returns the nodes at a key path ("*" and "[]" match any item).
func under(n *yaml.Node, segments []string) []*yaml.Node {
	n = resolve(n)
	if n == nil {
		return nil
	}
	if len(segments) == 0 {
		return []*yaml.Node{n}
	}
	seg, rest := segments[0], segments[1:]
	var out []*yaml.Node
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if seg == "*" || n.Content[i].Value == seg {
				out = append(out, under(n.Content[i+1], rest)...)
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return under(n.Content[i], rest)
		}
		if seg == "[]" || seg == "*" {
			for _, item := range n.Content {
				out = append(out, under(item, rest)...)
			}
		}
	}
	return out
}

// firstScalar returns the line of the first scalar below n that matches.
func firstScalar(n *yaml.Node, match func(string) bool) int {
	n = resolve(n)
	if n == nil {
		return 0
	}
	if n.Kind == yaml.ScalarNode {
		if match(n.Value) {
			return n.Line
		}
		return 0
	}
	for _, c := range n.Content {
		if line := firstScalar(c, match); line > 0 {
			return line
		}
	}
	return 0
}

// findVariable returns the first line using ${name...} or $name.
func findVariable(files []string, name string) (string, int) {
	return findText(files, regexp.MustCompile(`\$\{`+name+`\b|\$`+name+`\b`))
}

// findText returns the first line of the files that matches re.
func findText(files []string, re *regexp.Regexp) (string, int) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			if re.MatchString(line) {
				return f, i + 1
			}
		}
	}
	return "", 0
}
