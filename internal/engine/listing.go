package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/client"
)

// ProjectDigests lists the containers, networks and volumes of every
// compose project in three calls, and sums each project's up in a digest
// that changes when one of its objects is created, removed, renamed,
// recreated, started, stopped, paused or changes health. It inspects
// nothing: a periodic look at many stacks compares only those whose digest
// moved. What it cannot see is a change in place (`docker update`), which
// the engine's events report.
func (e *Engine) ProjectDigests(ctx context.Context) (map[string]string, error) {
	lines := map[string][]string{}
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", LabelProject)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs.Items {
		p := c.Labels[LabelProject]
		lines[p] = append(lines[p], fmt.Sprintf("c %s %q %s %s %s", c.ID, c.Names, c.ImageID, c.State, healthOf(c.Status)))
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", LabelProject)})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns.Items {
		p := n.Labels[LabelProject]
		lines[p] = append(lines[p], "n "+n.ID+" "+n.Name)
	}
	vs, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", LabelProject)})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range vs.Items {
		p := v.Labels[LabelProject]
		lines[p] = append(lines[p], "v "+v.Name)
	}
	out := make(map[string]string, len(lines))
	for p, ls := range lines {
		slices.Sort(ls)
		sum := sha256.Sum256([]byte(strings.Join(ls, "\n")))
		out[p] = hex.EncodeToString(sum[:])
	}
	return out, nil
}

// healthOf is the health a container list's status shows ("Up 2 minutes
// (healthy)"); the rest of it is a clock.
func healthOf(status string) string {
	if i := strings.LastIndexByte(status, '('); i >= 0 && strings.HasSuffix(status, ")") {
		return status[i:]
	}
	return ""
}
