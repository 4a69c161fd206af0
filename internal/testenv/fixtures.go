package testenv

import "fmt"

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
networks:
  default:
    labels: {%[2]s: "1"}
volumes:
  data:
    labels: {%[2]s: "1"}
`, image, TestLabel, keepLast)
}
