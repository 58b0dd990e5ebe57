package main

// The /metrics endpoint: the server's counters in the Prometheus text
// exposition format (version 0.0.4, which OpenMetrics scrapers read too).
//
// Hand-written rather than with github.com/prometheus/client_golang: the
// counters already exist as atomics (treff.Server.Stats, the modules'
// counters), so a registry would only copy them; the format is a few
// lines per series; and the client library would add about ten modules
// (client_model, common, procfs, protobuf, ...) to a dependency list that
// is otherwise the bbolt store and x/net.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/authlimit"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/storage"
)

// defaultMetricsAddr is where "metrics = yes" serves /metrics.
const defaultMetricsAddr = "127.0.0.1:5282"

// offlineCountAge is how long a count of the stored offline messages is
// reused while no message was stored: counting reads every account's
// queue. (Deliveries empty queues without a count changing here, so the
// figure may be that much too high.)
const offlineCountAge = 15 * time.Second

// latencyBuckets are the upper bounds, in seconds, of the storage latency
// histograms: 50 µs to 2.5 s.
var latencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// histogram counts durations in latencyBuckets, lock-free.
type histogram struct {
	counts [16]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sum    atomic.Int64      // nanoseconds
}

// total is the number of observations.
func (h *histogram) total() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// timedStore is the store (bbolt or PostgreSQL) with the latency of the
// two appends on the message path measured. Embedding keeps every other
// method of fullStore (and so every optional storage interface the
// modules look for).
type timedStore struct {
	fullStore
	offline, archive histogram
}

func (s *timedStore) PushOffline(ctx context.Context, user string, msg storage.OfflineMessage, limit int) (uint64, error) {
	t := time.Now()
	id, err := s.fullStore.PushOffline(ctx, user, msg, limit)
	s.offline.observe(time.Since(t))
	return id, err
}

func (s *timedStore) AppendArchive(ctx context.Context, user string, msg storage.ArchivedMessage) (string, error) {
	t := time.Now()
	id, err := s.fullStore.AppendArchive(ctx, user, msg)
	s.archive.observe(time.Since(t))
	return id, err
}

// metricsHandler serves /metrics for one server.
type metricsHandler struct {
	srv   *treff.Server
	store *timedStore

	mu          sync.Mutex
	offlineAt   time.Time
	offlineN    int
	offlinePush uint64 // PushOffline calls when offlineN was counted
	runtimeRead []metrics.Sample
}

// serveMetrics serves /metrics on l until ctx is done.
func serveMetrics(ctx context.Context, l net.Listener, h *metricsHandler) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	hs.Serve(l)
}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	h.write(r.Context(), bw)
	bw.Flush()
}

// metricWriter writes series in the text format; each family's HELP and
// TYPE come once, before its samples.
type metricWriter struct{ w io.Writer }

func (m metricWriter) family(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one sample; labels are name, value pairs (fixed words,
// never user data, so they need no escaping).
func (m metricWriter) sample(name string, v float64, labels ...string) {
	io.WriteString(m.w, name)
	if len(labels) > 0 {
		io.WriteString(m.w, "{")
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				io.WriteString(m.w, ",")
			}
			fmt.Fprintf(m.w, "%s=%q", labels[i], labels[i+1])
		}
		io.WriteString(m.w, "}")
	}
	io.WriteString(m.w, " "+strconv.FormatFloat(v, 'g', -1, 64)+"\n")
}

func (m metricWriter) one(name, typ, help string, v float64) {
	m.family(name, typ, help)
	m.sample(name, v)
}

func (m metricWriter) histogram(h *histogram, name, label, value string) {
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i].Load()
		m.sample(name+"_bucket", float64(cum), label, value, "le", strconv.FormatFloat(le, 'g', -1, 64))
	}
	cum += h.counts[len(latencyBuckets)].Load()
	m.sample(name+"_bucket", float64(cum), label, value, "le", "+Inf")
	m.sample(name+"_sum", time.Duration(h.sum.Load()).Seconds(), label, value)
	m.sample(name+"_count", float64(cum), label, value)
}

func (h *metricsHandler) write(ctx context.Context, w io.Writer) {
	m := metricWriter{w}
	st := h.srv.Stats()

	byTransport := func(name, typ, help string, t treff.ByTransport) {
		m.family(name, typ, help)
		for _, s := range []struct {
			l string
			n int64
		}{{"tcp", t.TCP}, {"tls", t.TLS}, {"websocket", t.WebSocket}, {"bosh", t.BOSH}, {"other", t.Other}} {
			m.sample(name, float64(s.n), "transport", s.l)
		}
	}
	byTransport("treff_sessions", "gauge", "Client sessions bound now (including those waiting to be resumed), by transport.", st.Sessions)
	byTransport("treff_sessions_bound_total", "counter", "Client sessions bound since the server started, by transport.", st.SessionsBound)
	byKind := func(name, help string, k treff.ByKind) {
		m.family(name, "counter", help)
		m.sample(name, float64(k.Message), "kind", "message")
		m.sample(name, float64(k.Presence), "kind", "presence")
		m.sample(name, float64(k.IQ), "kind", "iq")
	}
	byKind("treff_stanzas_in_total", "Stanzas read from clients, by kind.", st.StanzasIn)
	byKind("treff_stanzas_out_total", "Stanzas queued for clients, by kind.", st.StanzasOut)
	m.family("treff_deliveries_total", "counter", "Routed stanzas by outcome: queued to a local account's session, stored offline, or bounced with an error (any stanza the server could not deliver).")
	m.sample("treff_deliveries_total", float64(st.Delivered), "result", "delivered")
	m.sample("treff_deliveries_total", float64(st.Offline), "result", "offline")
	m.sample("treff_deliveries_total", float64(st.Bounced), "result", "bounced")

	fed := s2sModule(h.srv)
	var s2sDrops uint64
	if fed != nil {
		fs := fed.Stats()
		s2sDrops = fs.QueueDrops
		m.family("treff_s2s_streams", "gauge", "Server-to-server streams by direction and state.")
		m.sample("treff_s2s_streams", float64(fs.InAuthenticated), "direction", "in", "state", "established")
		m.sample("treff_s2s_streams", float64(fs.InNegotiating), "direction", "in", "state", "negotiating")
		m.sample("treff_s2s_streams", float64(fs.OutReady), "direction", "out", "state", "established")
		m.sample("treff_s2s_streams", float64(fs.OutConnecting), "direction", "out", "state", "negotiating")
	}
	m.family("treff_queue_drops_total", "counter", "Client sessions closed for a full outbound queue (c2s); stanzas refused for a full queue of an outgoing server-to-server stream (s2s).")
	m.sample("treff_queue_drops_total", float64(st.QueueDrops), "queue", "c2s")
	m.sample("treff_queue_drops_total", float64(s2sDrops), "queue", "s2s")

	var registered, authFailures, authRefused uint64
	for _, mod := range h.srv.Modules {
		switch mod := mod.(type) {
		case *register.Module:
			registered = mod.Registered()
		case *authlimit.Module:
			authFailures, authRefused = mod.Failures(), mod.Refused()
		}
	}
	m.one("treff_registrations_total", "counter", "Accounts created by in-band registration since the server started.", float64(registered))
	m.one("treff_auth_failures_total", "counter", "Failed login attempts since the server started.", float64(authFailures))
	m.one("treff_auth_refused_total", "counter", "Login attempts refused by the rate limits since the server started.", float64(authRefused))

	if n, ok := h.offlineCount(ctx); ok {
		m.one("treff_offline_messages", "gauge", "Messages stored for users without an available session (recounted when one was stored, else at most every 15 s).", float64(n))
	}
	if h.store != nil {
		m.family("treff_storage_seconds", "histogram", "Latency of storage appends on the message path.")
		m.histogram(&h.store.offline, "treff_storage_seconds", "op", "offline_push")
		m.histogram(&h.store.archive, "treff_storage_seconds", "op", "archive_append")
	}
	h.writeRuntime(m)
}

// offlineCount returns the number of stored offline messages, counted
// at most once per offlineCountAge.
func (h *metricsHandler) offlineCount(ctx context.Context) (int, bool) {
	if h.store == nil {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pushes := h.store.offline.total()
	if !h.offlineAt.IsZero() && time.Since(h.offlineAt) < offlineCountAge && pushes == h.offlinePush {
		return h.offlineN, true
	}
	accts, err := h.store.ListAccounts(ctx, "")
	if err != nil {
		return 0, false
	}
	n := 0
	for _, a := range accts {
		c, err := h.store.CountOffline(ctx, a.JID)
		if err != nil {
			return 0, false
		}
		n += c
	}
	h.offlineAt, h.offlineN, h.offlinePush = time.Now(), n, pushes
	return n, true
}

// runtimeSeries are the Go runtime's metrics exposed, with their names
// and types here.
var runtimeSeries = []struct{ key, name, typ, help string }{
	{"/sched/goroutines:goroutines", "go_goroutines", "gauge", "Goroutines that currently exist."},
	{"/memory/classes/heap/objects:bytes", "go_heap_objects_bytes", "gauge", "Bytes of heap memory occupied by live and not yet swept objects."},
	{"/gc/heap/goal:bytes", "go_heap_goal_bytes", "gauge", "Heap size the garbage collector aims for at the end of this cycle."},
	{"/memory/classes/total:bytes", "go_memory_total_bytes", "gauge", "Memory mapped by the Go runtime."},
	{"/gc/cycles/total:gc-cycles", "go_gc_cycles_total", "counter", "Completed garbage collection cycles."},
}

func (h *metricsHandler) writeRuntime(m metricWriter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.runtimeRead == nil {
		h.runtimeRead = make([]metrics.Sample, len(runtimeSeries))
		for i, s := range runtimeSeries {
			h.runtimeRead[i].Name = s.key
		}
	}
	metrics.Read(h.runtimeRead)
	for i, s := range runtimeSeries {
		v := h.runtimeRead[i].Value
		var f float64
		switch v.Kind() {
		case metrics.KindUint64:
			f = float64(v.Uint64())
		case metrics.KindFloat64:
			f = v.Float64()
		default:
			continue // not in this Go version
		}
		m.one(s.name, s.typ, s.help, f)
	}
}

// startMetrics listens on cfg.Metrics (if set) and serves /metrics until
// ctx is done.
func startMetrics(ctx context.Context, cfg Config, srv *treff.Server, store *timedStore, log *slog.Logger) error {
	if cfg.Metrics == "" {
		return nil
	}
	l, err := net.Listen("tcp", cfg.Metrics)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if !isLoopback(cfg.Metrics) {
		log.Warn("the metrics endpoint is not on loopback: anyone who reaches it sees the server's activity", "metrics", cfg.Metrics)
	}
	go serveMetrics(ctx, l, &metricsHandler{srv: srv, store: store})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	log.Info("metrics endpoint", "port", port)
	return nil
}
