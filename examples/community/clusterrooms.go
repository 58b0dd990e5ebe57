package main

import (
	"log/slog"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/cluster"
	"github.com/treff-im/treff/muc"
)

// startRooms places the group chat rooms on the nodes of the cluster
// (cluster.Rooms: one node at a time owns a room, the others forward to
// it; see docs/cluster.md; cluster_room_queue), if the server runs the muc module. It returns
// what stops it, after the server's shutdown and before the node leaves.
func startRooms(cfg Config, node *cluster.Node, srv *treff.Server, log *slog.Logger) (stop func(), err error) {
	for _, m := range srv.Modules {
		if m, ok := m.(*muc.Module); ok {
			r := &cluster.Rooms{Node: node, MUC: m, Queue: cfg.ClusterRoomQueue, Logger: log}
			if err := r.Start(); err != nil {
				return nil, err
			}
			return r.Stop, nil
		}
	}
	return func() {}, nil
}
