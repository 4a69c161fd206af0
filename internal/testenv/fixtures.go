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
