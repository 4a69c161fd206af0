package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Network is an observed network of a compose project.
type Network struct {
	ID, Name, Project, Key string // Key: the network's key in the compose file
	Managed                bool
}

// EnsureNetwork creates the project's network key if it does not exist
// (external networks must exist) and returns its ID. A network that exists
// under the name is used as it is, as compose uses it.
func (e *Engine) EnsureNetwork(ctx context.Context, project *types.Project, key string, extraLabels map[string]string) (string, error) {
	n, ok := project.Networks[key]
	if !ok {
		return "", fmt.Errorf("network %s is not declared", key)
	}
	res, err := e.cli.NetworkInspect(ctx, n.Name, client.NetworkInspectOptions{})
	if err == nil && (res.Network.Name == n.Name || res.Network.ID == n.Name) {
		return res.Network.ID, nil
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect network %s: %w", n.Name, err)
	}
	if n.External {
		return "", fmt.Errorf("external network %s not found", n.Name)
	}
	labels := objectLabels(n.Labels, LabelNetwork, key, project.Name, extraLabels)
	opts := client.NetworkCreateOptions{
		Labels: labels, Driver: n.Driver, Options: n.DriverOpts, Internal: n.Internal,
		Attachable: n.Attachable, EnableIPv6: n.EnableIPv6, EnableIPv4: n.EnableIPv4,
	}
	if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 {
		opts.IPAM = &network.IPAM{Driver: n.Ipam.Driver}
		for _, pool := range n.Ipam.Config {
			c := network.IPAMConfig{AuxAddress: map[string]netip.Addr{}}
			if pool.Subnet != "" {
				if c.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
					return "", fmt.Errorf("network %s: subnet %q: %w", key, pool.Subnet, err)
				}
			}
			if pool.IPRange != "" {
				if c.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
					return "", fmt.Errorf("network %s: ip_range %q: %w", key, pool.IPRange, err)
				}
			}
			if pool.Gateway != "" {
				if c.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
					return "", fmt.Errorf("network %s: gateway %q: %w", key, pool.Gateway, err)
				}
			}
			for name, a := range pool.AuxiliaryAddresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					return "", fmt.Errorf("network %s: aux_addresses %s: %w", key, name, err)
				}
				c.AuxAddress[name] = addr
			}
			opts.IPAM.Config = append(opts.IPAM.Config, c)
		}
	}
	created, err := e.cli.NetworkCreate(ctx, n.Name, opts)
	if err != nil {
		return "", fmt.Errorf("create network %s: %w", n.Name, err)
	}
	return created.ID, nil
}

// Networks lists the networks carrying the project's compose label.
func (e *Engine) Networks(ctx context.Context, project string) ([]Network, error) {
	res, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", LabelProject+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("list networks of %s: %w", project, err)
	}
	out := make([]Network, 0, len(res.Items))
	for _, n := range res.Items {
		_, managed := n.Labels[LabelStack]
		out = append(out, Network{ID: n.ID, Name: n.Name, Project: n.Labels[LabelProject], Key: n.Labels[LabelNetwork], Managed: managed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ErrNetworkLeaked marks a network the engine refuses to remove for
// "active endpoints" though nothing is attached to it. Docker 20.10 leaks
// an endpoint count now and then when containers go (moby/moby#43286); only
// a restart of dockerd frees such a network. Callers treat it as left
// behind, not as a failure of what they were doing.
var ErrNetworkLeaked = errors.New("the engine reports active endpoints with nothing attached (moby/moby#43286); restart dockerd to free it")

// RemoveNetwork removes a network; a missing one is no error. An endpoint
// of a container just removed can take a moment to be released, and one
// whose container is gone can stay listed: both are waited for or
// disconnected by force for a few seconds. A network the engine still
// refuses with nothing attached is ErrNetworkLeaked.
func (e *Engine) RemoveNetwork(ctx context.Context, id string) error {
	const attempts = 12
	for attempt := 1; ; attempt++ {
		_, err := e.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !strings.Contains(err.Error(), "active endpoints") {
			return fmt.Errorf("remove network %s: %w", ids.Short(id), err)
		}
		res, ierr := e.cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
		if ierr != nil {
			if cerrdefs.IsNotFound(ierr) {
				return nil
			}
			return fmt.Errorf("remove network %s: %w", ids.Short(id), errors.Join(err, ierr))
		}
		attached := len(res.Network.Containers)
		if attempt == attempts {
			if attached == 0 {
				return fmt.Errorf("remove network %s: %w", ids.Short(id), ErrNetworkLeaked)
			}
			return fmt.Errorf("remove network %s: %d container(s) still attached: %w", ids.Short(id), attached, err)
		}
		for cid := range res.Network.Containers {
			if _, cerr := e.cli.ContainerInspect(ctx, cid, client.ContainerInspectOptions{}); cerrdefs.IsNotFound(cerr) {
				// The container is gone but its endpoint is listed.
				_, _ = e.cli.NetworkDisconnect(ctx, id, client.NetworkDisconnectOptions{Container: cid, Force: true})
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove network %s: %w", ids.Short(id), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Volume is an observed volume of a compose project.
type Volume struct {
	Name, Project, Key string
	Managed            bool
	// Foreign says, as compose warns it, why a volume the project declares
	// is used though it does not carry the project's labels (made by hand,
	// or by another project); "" for a volume of the project.
	Foreign string
}

// EnsureVolume creates the project's volume key if it does not exist.
// External volumes must exist. An existing volume is never recreated: its
// data is worth more than a changed driver option.
func (e *Engine) EnsureVolume(ctx context.Context, project *types.Project, key string, extraLabels map[string]string) error {
	v, ok := project.Volumes[key]
	if !ok {
		return fmt.Errorf("volume %s is not declared", key)
	}
	_, err := e.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect volume %s: %w", v.Name, err)
	}
	if v.External {
		return fmt.Errorf("external volume %s not found", v.Name)
	}
	labels := objectLabels(v.Labels, LabelVolume, key, project.Name, extraLabels)
	if _, err := e.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: v.Name, Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: labels}); err != nil {
		return fmt.Errorf("create volume %s: %w", v.Name, err)
	}
	return nil
}

// DeclaredVolume looks up, by its name, the volume the project's key names,
// whatever its labels. Compose uses a volume that exists under the name even
// when it did not create it, and warns; Foreign carries that warning. A
// volume labelled for the project is what Volumes lists already.
func (e *Engine) DeclaredVolume(ctx context.Context, project *types.Project, key string) (Volume, bool, error) {
	v, ok := project.Volumes[key]
	if !ok {
		return Volume{}, false, fmt.Errorf("volume %s is not declared", key)
	}
	res, err := e.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return Volume{}, false, nil
	}
	if err != nil {
		return Volume{}, false, fmt.Errorf("inspect volume %s: %w", v.Name, err)
	}
	labels := res.Volume.Labels
	_, managed := labels[LabelStack]
	out := Volume{Name: v.Name, Project: labels[LabelProject], Key: key, Managed: managed}
	out.Foreign = foreignVolume(v.Name, project.Name, labels)
	return out, true, nil
}

// foreignVolume is compose's warning for a volume the project uses but
// did not create, or "" when the labels say the project made it.
func foreignVolume(name, project string, labels map[string]string) string {
	switch owner := labels[LabelProject]; owner {
	case project:
		return ""
	case "":
		return fmt.Sprintf("volume %q already exists but was not created by Docker Compose", name)
	default:
		return fmt.Sprintf("volume %q already exists but was created for project %q (expected %q)", name, owner, project)
	}
}

// Volumes lists the volumes carrying the project's compose label.
func (e *Engine) Volumes(ctx context.Context, project string) ([]Volume, error) {
	res, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", LabelProject+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("list volumes of %s: %w", project, err)
	}
	out := make([]Volume, 0, len(res.Items))
	for _, v := range res.Items {
		_, managed := v.Labels[LabelStack]
		out = append(out, Volume{Name: v.Name, Project: v.Labels[LabelProject], Key: v.Labels[LabelVolume], Managed: managed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// objectLabels are the labels of a network or volume as compose writes them
// (its own, then compose's key, project and version), plus gitopsd's extra.
func objectLabels(own map[string]string, keyLabel, key, project string, extra map[string]string) map[string]string {
	labels := map[string]string{}
	maps.Copy(labels, own)
	labels[keyLabel] = key
	labels[LabelProject] = project
	labels[LabelVersion] = ComposeVersion
	maps.Copy(labels, extra)
	return labels
}
