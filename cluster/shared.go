package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/treff-im/treff/storage"
)

// Shared counts: rate limits (registrations per client address and per
// hour, failed logins) that must hold for the whole cluster, not per
// node. A module counts an event in its own memory and publishes it on a
// topic; every other node applies it to its own counts, so each node
// decides alone, at once, on the whole cluster's counts as far as NATS
// has delivered them. Nothing is stored: a node that cannot reach NATS
// counts alone until it can again.
//
// Subjects: PREFIX.share.TOPIC, payload the sending node's name, a
// newline, the module's bytes. They come through the node's ordered
// inbox, so an event published before a stanza is applied on the
// receiving node before that stanza reaches its recipient there.
//
// A node that starts, or hears of another node for the first time, asks
// it for its counts (PREFIX.node.NAME.stateq: the asking node's name, a
// newline, the topic); the other node answers on
// PREFIX.node.ASKING.state.TOPIC with its name, a newline, and its
// module's state entries, each preceded by its length (uvarint), in
// messages of at most stateChunk bytes. The module applies them with the
// same receiver as events, merging (a count it already has is not
// counted twice): so counts survive a node's restart, and a rolling
// restart, as long as one node runs.

// stateChunk bounds the payload of one state message (NATS's default
// limit is 1 MiB).
const stateChunk = 256 << 10

// share is a topic this node shares.
type share struct {
	recv  func([]byte)
	state func() [][]byte
}

// secretKeyHash is the name, in storage.Secrets, of the key HashKey uses.
const secretKeyHash = "cluster/key-hash"

// shareSubject returns the subject of topic.
func (n *Node) shareSubject(topic string) string { return n.subj("share", topic) }

// Share opens topic for events that every node of the cluster applies:
// recv is called with the bytes other nodes publish on it (never with
// this node's own), one at a time, in the order each node published them,
// on the goroutine that reads the node's inbox (it must not block). It
// returns the function that publishes data to the other nodes; publish
// does nothing while the node has no NATS connection or after Leave.
// Call it after Join and before the server serves, once per topic
// (letters, digits, '-' and '_').
//
// state, if not nil, returns what this node counts now as entries that
// recv on another node merges into its counts (telling them apart from
// events, and taking the larger count rather than adding: a node may
// get the same counts from several nodes, and events it got already).
// A node asks for them when it shares the topic and when it hears of a
// node for the first time. Entries of an empty slice are skipped.
//
// Data must not hold a person's identifying values in clear: hash a
// client address with HashKey first.
func (n *Node) Share(topic string, recv func(data []byte), state func() [][]byte) (publish func(data []byte), err error) {
	if n.srv == nil {
		return nil, errors.New("cluster: Share before Join")
	}
	if !validName(topic) {
		return nil, fmt.Errorf("cluster: topic %q: use letters, digits, '-' and '_'", topic)
	}
	subject := n.shareSubject(topic)
	n.mu.Lock()
	if n.shares == nil {
		n.shares = make(map[string]*share)
	}
	if _, dup := n.shares[subject]; dup {
		n.mu.Unlock()
		return nil, fmt.Errorf("cluster: topic %q shared twice", topic)
	}
	n.shares[subject] = &share{recv: recv, state: state}
	n.mu.Unlock()
	subjects := []string{subject, n.subj("node", n.Name, "state", topic)}
	for _, subj := range subjects {
		s, err := n.Conn.ChanSubscribe(subj, n.inbox)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		n.mu.Lock()
		n.subs = append(n.subs, s)
		n.mu.Unlock()
	}
	n.mu.Lock()
	if n.stateq == nil {
		n.stateq, err = n.Conn.Subscribe(n.subj("node", n.Name, "stateq"), n.onStateRequest)
		if err != nil {
			n.mu.Unlock()
			return nil, fmt.Errorf("cluster: subscribe: %w", err)
		}
		n.subs = append(n.subs, n.stateq)
	}
	peers := make([]string, 0, len(n.peers))
	for name := range n.peers {
		peers = append(peers, name)
	}
	n.mu.Unlock()
	if state != nil {
		// The answers come to the subscriptions above: the servers know
		// them before the requests (one connection, in order).
		n.Conn.Flush()
		for _, p := range peers {
			n.askState(p, topic)
		}
	}
	return func(data []byte) {
		n.mu.Lock()
		left := n.left
		n.mu.Unlock()
		if left || !n.Conn.IsConnected() {
			return
		}
		b := make([]byte, 0, len(n.Name)+1+len(data))
		b = append(append(append(b, n.Name...), '\n'), data...)
		if err := n.Conn.Publish(subject, b); err != nil {
			n.log().Debug("cluster: shared event not published", "topic", topic, "err", err)
		}
	}, nil
}

// onShare hands an event another node published to its topic's
// receiver.
func (n *Node) onShare(m *nats.Msg) {
	i := bytes.IndexByte(m.Data, '\n')
	if i < 0 || string(m.Data[:i]) == n.Name {
		return
	}
	n.mu.Lock()
	sh := n.shares[m.Subject]
	n.mu.Unlock()
	if sh != nil {
		sh.recv(m.Data[i+1:])
	}
}

// askState asks node peer for its state of topic, or of every topic
// this node shares with a state if topic is "".
func (n *Node) askState(peer, topic string) {
	n.mu.Lock()
	var topics []string
	prefix := n.shareSubject("")
	for subj, sh := range n.shares {
		if t := strings.TrimPrefix(subj, prefix); sh.state != nil && (topic == "" || t == topic) {
			topics = append(topics, t)
		}
	}
	left := n.left
	n.mu.Unlock()
	if left || !n.Conn.IsConnected() {
		return
	}
	for _, t := range topics {
		if err := n.Conn.Publish(n.subj("node", peer, "stateq"), []byte(n.Name+"\n"+t)); err != nil {
			n.log().Debug("cluster: state request not published", "node", peer, "topic", t, "err", err)
		}
	}
}

// onStateRequest answers another node's request for this node's state
// of a topic, in messages of at most stateChunk bytes.
func (n *Node) onStateRequest(m *nats.Msg) {
	asker, topic, ok := strings.Cut(string(m.Data), "\n")
	if !ok || !validName(asker) || !validName(topic) || asker == n.Name {
		return
	}
	n.mu.Lock()
	sh := n.shares[n.shareSubject(topic)]
	left := n.left
	n.mu.Unlock()
	if sh == nil || sh.state == nil || left {
		return
	}
	subject := n.subj("node", asker, "state", topic)
	head := n.Name + "\n"
	b := []byte(head)
	flush := func() {
		if len(b) > len(head) {
			if err := n.Conn.Publish(subject, b); err != nil {
				n.log().Debug("cluster: state not published", "node", asker, "topic", topic, "err", err)
			}
		}
		b = []byte(head)
	}
	for _, e := range sh.state() {
		if len(e) == 0 || len(e) > stateChunk/2 {
			continue
		}
		if len(b)+binary.MaxVarintLen64+len(e) > stateChunk {
			flush()
		}
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	flush()
}

// onState hands the state entries another node sent to the topic's
// receiver.
func (n *Node) onState(m *nats.Msg) {
	i := bytes.IndexByte(m.Data, '\n')
	if i < 0 || string(m.Data[:i]) == n.Name {
		return
	}
	topic := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	n.mu.Lock()
	sh := n.shares[n.shareSubject(topic)]
	n.mu.Unlock()
	if sh == nil {
		return
	}
	for rest := m.Data[i+1:]; len(rest) > 0; {
		l, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < l {
			return
		}
		sh.recv(rest[k : k+int(l)])
		rest = rest[k+int(l):]
	}
}

// HashKey returns a keyed hash of s (HMAC-SHA-256 with a secret every
// node shares, 128 bits, base64): the same on every node, so that nodes
// can count per client address without the address ever leaving the
// node that saw it. Without the key a hash of an IPv4 address could be
// reversed by trying all 2^32 of them. Call it after Join.
func (n *Node) HashKey(s string) string {
	mac := hmac.New(sha256.New, n.keyHash)
	mac.Write([]byte(s))
	return base64.RawStdEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// loadKeyHash sets the key of HashKey: KeySecret, or the one in the
// shared store (created by the first node that needs it), or, with a
// store without storage.Secrets, a random one for this node alone.
func (n *Node) loadKeyHash() error {
	if len(n.KeySecret) > 0 {
		n.keyHash = bytes.Clone(n.KeySecret)
		return nil
	}
	st, ok := n.srv.Storage.(storage.Secrets)
	if !ok {
		n.keyHash = make([]byte, 32)
		rand.Read(n.keyHash)
		n.log().Warn("cluster: the store keeps no shared secrets; per-address counts are not shared between nodes (set Node.KeySecret)")
		return nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	for range 2 { // a lost swap means another node stored one
		b, err := st.Secret(ctx, secretKeyHash)
		if err == nil {
			n.keyHash = b
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("cluster: the key of shared counts: %w", err)
		}
		v := make([]byte, 32)
		rand.Read(v)
		ok, err := st.SwapSecret(ctx, secretKeyHash, nil, v)
		if err != nil {
			return fmt.Errorf("cluster: the key of shared counts: %w", err)
		}
		if ok {
			n.keyHash = v
			return nil
		}
	}
	return errors.New("cluster: the key of shared counts: neither stored nor readable")
}
