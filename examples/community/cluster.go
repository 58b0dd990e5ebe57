package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/authlimit"
	"github.com/treff-im/treff/cluster"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/register"
)

// sharedStore reports whether the configured store can be shared by the
// nodes of a cluster: PostgreSQL can, bbolt (a file that one process
// holds locked) cannot.
func sharedStore(cfg Config) bool { return cfg.Store == storePostgres }

// checkCluster refuses cluster = yes without a store all nodes share:
// each node would have its own accounts, rosters and offline messages.
func checkCluster(cfg Config) error {
	if !cfg.Cluster {
		return nil
	}
	if !sharedStore(cfg) {
		return usageErrorf("cluster = yes needs a store that all nodes share (store = postgres); the bbolt store (treff.db in the data folder) belongs to one process")
	}
	if cfg.ClusterDeadAfter <= cfg.ClusterHeartbeat {
		return usageErrorf("cluster_dead_after (%v) must be more than cluster_heartbeat (%v)", cfg.ClusterDeadAfter, cfg.ClusterHeartbeat)
	}
	if (cfg.ClusterTLSCert == "") != (cfg.ClusterTLSKey == "") {
		return usageErrorf("cluster_tls_cert and cluster_tls_key go together")
	}
	if cfg.ClusterNATS == "" && cfg.ClusterTLSCert != "" && cfg.ClusterTLSCA == "" {
		return usageErrorf("cluster_tls_cert needs cluster_tls_ca: the CA that signs every node's route certificate")
	}
	if cfg.ClusterNATS == "" && cfg.ClusterTLSCA != "" && cfg.ClusterTLSCert == "" {
		return usageErrorf("cluster_tls_ca needs cluster_tls_cert and cluster_tls_key: this node's route certificate")
	}
	return nil
}

// joinCluster connects to NATS (cluster_nats, or an embedded server
// routed to cluster_peers) and makes srv a node of the cluster. Call
// leave after srv has shut down.
func joinCluster(cfg Config, srv *treff.Server, log *slog.Logger) (leave func(), err error) {
	if cfg.NodeName == "" {
		cfg.NodeName = cluster.HostName()
	}
	var nc *nats.Conn
	var ns *natsserver.Server
	if cfg.ClusterNATS != "" {
		var opts []nats.Option
		opts, err = cluster.ConnectTLS(cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA)
		if err != nil {
			return nil, err
		}
		nc, err = cluster.Connect(cfg.ClusterNATS, cfg.NodeName, opts...)
	} else {
		var secret string
		if cfg.ClusterSecretFile != "" {
			b, err := os.ReadFile(cfg.ClusterSecretFile)
			if err != nil {
				return nil, fmt.Errorf("cluster_secret_file: %w", err)
			}
			if secret = strings.TrimSpace(string(b)); secret == "" {
				return nil, fmt.Errorf("cluster_secret_file %s is empty", cfg.ClusterSecretFile)
			}
		}
		var routeTLS *tls.Config
		if cfg.ClusterTLSCert != "" {
			if routeTLS, err = cluster.RouteTLS(cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA); err != nil {
				return nil, err
			}
		}
		if cfg.ClusterListen != "" && !isLoopback(cfg.ClusterListen) {
			switch {
			case routeTLS != nil:
				log.Info("the NATS routes between the nodes use TLS with certificates of cluster_tls_ca", "cluster_listen", cfg.ClusterListen)
			case secret == "":
				log.Warn("the cluster listener is not on loopback and neither cluster_tls_cert nor cluster_secret_file is set: any server that reaches it can join, and the routes are not encrypted; keep it on a private network", "cluster_listen", cfg.ClusterListen)
			default:
				log.Info("the NATS routes between the nodes are authenticated, not encrypted (set cluster_tls_cert, cluster_tls_key, cluster_tls_ca): keep cluster_listen on a private network", "cluster_listen", cfg.ClusterListen)
			}
		}
		ns, nc, err = cluster.Embedded{Name: cfg.NodeName, Listen: cfg.ClusterListen, Peers: cfg.ClusterPeers, Secret: secret, TLS: routeTLS}.Start()
	}
	if err != nil {
		return nil, err
	}
	node := &cluster.Node{Name: cfg.NodeName, Conn: nc, Logger: log, Heartbeat: cfg.ClusterHeartbeat, DeadAfter: cfg.ClusterDeadAfter}
	if err := node.Join(srv); err != nil {
		nc.Close()
		if ns != nil {
			ns.Shutdown()
		}
		return nil, err
	}
	shareLimits(srv, node)
	stopRooms, err := startRooms(cfg, node, srv, log)
	if err != nil {
		node.Leave()
		nc.Close()
		if ns != nil {
			ns.Shutdown()
		}
		return nil, err
	}
	log.Info("joined the cluster", "node", cfg.NodeName, "nats", cfg.ClusterNATS, "listen", cfg.ClusterListen, "peers", len(cfg.ClusterPeers))
	return func() {
		stopRooms()
		node.Leave()
		nc.Close()
		if ns != nil {
			ns.Shutdown()
		}
	}, nil
}

// shareLimits makes the registration limits (registration_per_address,
// registration_global) and the failed-login limits (auth_limit,
// auth_limit_account) hold for the whole cluster: the modules share
// their counts through the node (client addresses hashed with a key the
// nodes keep in the shared store; see docs/cluster.md). The offline
// module shares through it too: a node that stored a message for an
// account tells the others, whose sessions of it that came online
// meanwhile read the store again.
func shareLimits(srv *treff.Server, node *cluster.Node) {
	for _, m := range srv.Modules {
		switch m := m.(type) {
		case *register.Module:
			m.Shared = node
		case *authlimit.Module:
			m.Shared = node
		case *offline.Module:
			m.Shared = node
		}
	}
}
