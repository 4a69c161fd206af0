package testenv

import (
	"fmt"
	"strings"
)

// BackupStack is a compose file whose one service, app, runs image with
// the named volume data mounted at /data, which x-gitopsd backs up keeping
// the last keepLast snapshots. Every object carries TestLabel.
func BackupStack(image string, keepLast int) string {
	return fmt.Sprintf(`x-gitopsd:
  backup: {volumes: {data: {keep: {last: %[3]d}}}}
services:
  app:
    image: %[1]s
    pull_policy: never
    volumes: ["data:/data"]
    labels: {%[2]s: "1"}
`+LabelledDefault("data"), image, TestLabel, keepLast)
}

// LabelledDefault is the end of a test's compose file: the default network
// and the named volumes given, each carrying TestLabel so that cleanup
// finds them.
func LabelledDefault(volumes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "networks:\n  default:\n    labels: {%s: \"1\"}\n", TestLabel)
	if len(volumes) > 0 {
		b.WriteString("volumes:\n")
		for _, v := range volumes {
			fmt.Fprintf(&b, "  %s:\n    labels: {%s: \"1\"}\n", v, TestLabel)
		}
	}
	return b.String()
}

// ProbeCheck is a healthcheck of the test app that passes within a second
// of its start (and fails while FAIL_HEALTH is set).
const ProbeCheck = `{test: ["CMD", "/testapp", "probe"], interval: 300ms, timeout: 2s, retries: 2}`

// JobStack is a compose file with a one-shot job, migrate, and a web
// service that waits for it to complete (service_completed_successfully),
// both running Image. Every object carries TestLabel.
type JobStack struct {
	Image string
	// JobFor is how long migrate runs ("700ms"), JobExit its exit code.
	JobFor  string
	JobExit int
	// JobVersion and WebVersion are the VERSION of each: changing one
	// recreates that service alone.
	JobVersion, WebVersion string
	// Worker adds a worker that waits for web to be healthy and restarts
	// when web is recreated (depends_on restart: true).
	Worker bool
}

// Compose is the stack's compose file.
func (s JobStack) Compose() string {
	worker := ""
	if s.Worker {
		worker = fmt.Sprintf(`  worker:
    image: %[1]s
    pull_policy: never
    healthcheck: %[2]s
    depends_on:
      web: {condition: service_healthy, restart: true}
    labels: {%[3]s: "1"}
`, s.Image, ProbeCheck, TestLabel)
	}
	return fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    pull_policy: never
    command: ["job", "--for", %[2]q, "--exit", "%[3]d"]
    environment: {VERSION: %[4]q}
    labels: {%[6]s: "1"}
  web:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[5]q}
    healthcheck: %[7]s
    depends_on:
      migrate: {condition: service_completed_successfully}
    labels: {%[6]s: "1"}
`+worker+LabelledDefault(), s.Image, s.JobFor, s.JobExit, s.JobVersion, s.WebVersion, TestLabel, ProbeCheck)
}
