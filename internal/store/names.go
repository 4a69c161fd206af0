package store

import (
	"context"
	"fmt"
)

// StackNames lists every stack the record knows: those with a row, and
// those that left the repository but keep deployments, drifts or
// snapshots, so that history, drift and backup list still answer for them.
func (s *Store) StackNames(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT name FROM stacks
		UNION SELECT stack FROM deployments
		UNION SELECT stack FROM drifts
		UNION SELECT stack FROM snapshots
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("read stack names: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read stack names: %w", err)
		}
		out = append(out, name)
	}
	return out, rows.Err()
}
