package stack

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestErrorsNameFileAndLine checks that every kind of load error points at
// the file and line a human has to fix, relative to the repository.
func TestErrorsNameFileAndLine(t *testing.T) {
	const svc = "services:\n  web:\n    image: x\n"
	cases := []struct {
		name  string
		files map[string]string // a single string means stacks/s/compose.yaml
		want  string            // exact prefix of Error()
	}{
		// YAML syntax: yaml.v3 names the enclosing block; the fault is later.
		{"yaml unclosed flow", one(svc + "    environment: [oops\n"), "stacks/s/compose.yaml:4: did not find expected ',' or ']'"},
		{"yaml bad indent", one(svc + "   ports: []\n"), "stacks/s/compose.yaml:4: did not find expected key"},
		{"yaml bad indent deep", one(svc + "    environment:\n      A: 1\n      B: 2\n     C: 3\n"), "stacks/s/compose.yaml:7: did not find expected key"},
		{"yaml tab", one("services:\n\tweb:\n"), "stacks/s/compose.yaml:2: found character that cannot start any token"},
		{"yaml colon in value", one(svc + "    command: a: b\n"), "stacks/s/compose.yaml:4: mapping values are not allowed in this context"},
		{"yaml duplicate key", one(svc + "    image: y\n"), `stacks/s/compose.yaml:4: mapping key "image" already defined at line 3`},
		{"yaml unknown anchor", one(svc + "    command: *nope\n"), "stacks/s/compose.yaml:4: unknown anchor 'nope' referenced"},

		// Schema: compose-go names a key path.
		{"unknown service key", one(svc + "    bogus: 1\n"), "stacks/s/compose.yaml:4: services.web additional properties 'bogus' not allowed"},
		{"unknown nested key", one(svc + "    healthcheck:\n      tst: [CMD]\n"), "stacks/s/compose.yaml:5: services.web.healthcheck additional properties 'tst' not allowed"},
		{"unknown top-level key", one("servics:\n  web:\n    image: x\n"), "stacks/s/compose.yaml:1: additional properties 'servics' not allowed"},
		{"key in a second document", one(svc + "---\nfoo: 1\n"), "stacks/s/compose.yaml:5: additional properties 'foo' not allowed"},
		{"wrong type", one(svc + "    environment: 3\n"), "stacks/s/compose.yaml:4: services.web.environment must be a mapping"},
		{"wrong item type", one(svc + "    ports:\n      - target: 80\n        published: [1]\n"), "stacks/s/compose.yaml:6: services.web.ports.0.published must be a integer or string"},
		{"bad service name", one("services:\n  Web App:\n    image: x\n"), "stacks/s/compose.yaml:2: services additional properties 'Web App' not allowed"},
		{"no image", one("services:\n  web:\n    environment: {A: b}\n"), "stacks/s/compose.yaml:2:"},

		// Decoding: compose-go names the field of the merged model.
		{"bad duration", one(svc + "    healthcheck:\n      interval: abc\n"), "stacks/s/compose.yaml:5: 'services[web].healthcheck.interval'"},
		{"bad size", one(svc + "    mem_limit: lots\n"), "stacks/s/compose.yaml:4: 'services[web].mem_limit' invalid size"},
		{"bad port", one(svc + "    ports:\n      - \"8080:80\"\n      - \"abc:def\"\n"), "stacks/s/compose.yaml:6: invalid containerPort: def"},
		{"bad replicas", one(svc + "    deploy:\n      replicas: many\n"), "stacks/s/compose.yaml:5: error while interpolating services.web.deploy.replicas"},

		// Interpolation: the line where the variable is used.
		{"required variable", one(svc + "    environment:\n      - OK=1\n      - A=${NOPE:?must be set}\n"), "stacks/s/compose.yaml:6: error while interpolating services.web.environment.[]: required variable NOPE is missing a value: must be set"},
		{"required variable in a label", one(svc + "    labels:\n      a: b\n      c: $${x} ${NOPE:?}\n"), "stacks/s/compose.yaml:6: error while interpolating services.web.labels.c: required variable NOPE is missing a value"},
		{"required variable in name", one("name: ${NAMEVAR:?need}\n" + svc), "stacks/s/compose.yaml:1: error while interpolating name: required variable NAMEVAR"},
		{"bad interpolation format", one(svc + "    environment:\n      - A=1\n      - B=x${\n"), "stacks/s/compose.yaml:6: invalid interpolation format for services.web.environment.[]: B=x${"},

		// Consistency: the reference to what does not exist.
		{"undefined dependency", one(svc + "    depends_on:\n      cache: {condition: service_started}\n      db: {condition: service_healthy}\n  cache: {image: x}\n"), `stacks/s/compose.yaml:6: service "web" depends on undefined service "db"`},
		{"undefined dependency short", one(svc + "    depends_on: [db]\n"), `stacks/s/compose.yaml:4: service "web" depends on undefined service "db"`},
		{"undefined volume", one(svc + "    volumes:\n      - ./a:/a\n      - data:/data\n"), `stacks/s/compose.yaml:6: service "web" refers to undefined volume data`},
		{"undefined network", one(svc + "    networks:\n      - default\n      - front\n"), `stacks/s/compose.yaml:6: service "web" refers to undefined network front`},
		{"dependency cycle", one(svc + "    depends_on: [db]\n  db:\n    image: x\n    depends_on: [web]\n"), "stacks/s/compose.yaml:7: dependency cycle detected: db -> web -> db"},

		// Files that compose reads besides the compose file.
		{"missing env_file", map[string]string{"stacks/s/compose.yaml": svc + "    env_file:\n      - ok.env\n      - missing.env\n", "stacks/s/ok.env": "A=1\n"}, "stacks/s/compose.yaml:6: env file stacks/s/missing.env not found"},
		{"missing extends file", one("services:\n  web:\n    extends:\n      file: other.yaml\n      service: base\n"), "stacks/s/compose.yaml:4: open stacks/s/other.yaml: no such file or directory"},
		{"missing include", one("include:\n  - missing.yaml\n" + svc), "stacks/s/compose.yaml:2: open stacks/s/missing.yaml: no such file or directory"},
		{"bad .env", map[string]string{"stacks/s/compose.yaml": svc, "stacks/s/.env": "A=1\nB='unterminated\nC=3\n"}, "stacks/s/.env:2: unterminated quoted value"},
		{"bad .env key", map[string]string{"stacks/s/compose.yaml": svc, "stacks/s/.env": "A=1\nB%x=1\n"}, `stacks/s/.env:2: unexpected character "%" in variable name`},
		{"bad env_file", map[string]string{"stacks/s/compose.yaml": svc + "    env_file: [a.env]\n", "stacks/s/a.env": "A=1\nB=\"x\n"}, "stacks/s/a.env:2: unterminated quoted value"},

		// The host overlay is named when the fault is in it.
		{"overlay schema", map[string]string{"stacks/s/compose.yaml": svc, "stacks/s/compose.edge-1.yaml": "services:\n  web:\n    bogus: 1\n"}, "stacks/s/compose.edge-1.yaml:3: services.web additional properties 'bogus' not allowed"},
		{"overlay syntax", map[string]string{"stacks/s/compose.yaml": svc, "stacks/s/compose.edge-1.yaml": "services:\n  web:\n    image: [\n"}, "stacks/s/compose.edge-1.yaml:"},
		{"overlay variable", map[string]string{"stacks/s/compose.yaml": svc, "stacks/s/compose.edge-1.yaml": "services:\n  web:\n    environment:\n      Z: ${NEED:?set NEED}\n"}, "stacks/s/compose.edge-1.yaml:4: error while interpolating services.web.environment.Z: required variable NEED is missing a value: set NEED"},

		// x-gitopsd.
		{"drift value", one(svc + "x-gitopsd:\n  drift: fix\n"), "stacks/s/compose.yaml:5: x-gitopsd.drift: must be heal or report"},
		{"unknown option", one(svc + "x-gitopsd:\n  targets: {hosts: [a]}\n  colour: red\n"), `stacks/s/compose.yaml:6: x-gitopsd.colour: unknown key "colour"`},
		{"bad host pattern", one(svc + "x-gitopsd:\n  targets:\n    hosts: [\"[\"]\n"), "stacks/s/compose.yaml:6: x-gitopsd.targets.hosts.0: bad pattern"},
		{"hosts not a list", one(svc + "x-gitopsd:\n  targets:\n    hosts: edge-1\n"), "stacks/s/compose.yaml:6: x-gitopsd.targets.hosts: must be a list"},
		{"label not scalar", one(svc + "x-gitopsd:\n  targets:\n    labels:\n      site: [a]\n"), "stacks/s/compose.yaml:7: x-gitopsd.targets.labels.site: must be a scalar"},
		{"unknown targets key", one(svc + "x-gitopsd:\n  targets:\n    host: [a]\n"), `stacks/s/compose.yaml:6: x-gitopsd.targets.host: unknown key "host"`},
		{"x-gitopsd not a mapping", one(svc + "x-gitopsd: 3\n"), "stacks/s/compose.yaml:4: x-gitopsd: must be a mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := repo(t, c.files)
			_, err := Load(context.Background(), dir, "s", host)
			if err == nil {
				t.Fatal("loaded")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error\n  %s\nwant prefix\n  %s", err, c.want)
			}
			if strings.Contains(err.Error(), dir) {
				t.Errorf("error names the checkout's absolute path: %s", err)
			}
		})
	}
}

func one(compose string) map[string]string {
	return map[string]string{"stacks/s/compose.yaml": compose}
}

// TestEnvErrorsKeepSecrets checks that a .env that does not parse is
// reported without quoting its values: errors reach status and the database.
func TestEnvErrorsKeepSecrets(t *testing.T) {
	for _, env := range []string{
		"A=1\nTOKEN='hunter2\nB=2\n",
		"A=1\nTOKEN=\"hunter2\n",
		"A=1\nTO%KEN=hunter2\n",
	} {
		dir := repo(t, map[string]string{"stacks/s/compose.yaml": "services:\n  web: {image: x}\n", "stacks/s/.env": env})
		_, err := Load(context.Background(), dir, "s", host)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "stacks/s/.env:2: ") {
			t.Errorf(".env %q: error %v", env, err)
		}
	}
}

func TestErrorFormats(t *testing.T) {
	for _, c := range []struct {
		err  Error
		want string
	}{
		{Error{Stack: "web", File: "stacks/web/compose.yaml", Line: 12, Msg: "bad"}, "stacks/web/compose.yaml:12: bad"},
		{Error{Stack: "web", File: "stacks/web/compose.yaml", Msg: "bad"}, "stacks/web/compose.yaml: bad"},
		{Error{Stack: "web", Msg: "bad"}, "stack web: bad"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.err, got, c.want)
		}
	}
}

func TestSyntaxLine(t *testing.T) {
	// A multi-line flow sequence that is fine must not be taken for the
	// fault; the fault is where the block mapping breaks later on.
	dir := repo(t, map[string]string{"stacks/s/compose.yaml": "services:\n  web:\n    image: x\n    command: [a,\n      b,\n      c]\n    user: \"1\"\n   bad: 1\n"})
	_, err := Load(context.Background(), dir, "s", host)
	if err == nil || !strings.HasPrefix(err.Error(), "stacks/s/compose.yaml:8: ") {
		t.Fatalf("error %v", err)
	}
}
