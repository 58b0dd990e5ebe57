package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
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
// Data must not hold a person's identifying values in clear: hash a
// client address with HashKey first.
func (n *Node) Share(topic string, recv func(data []byte)) (publish func(data []byte), err error) {
	if n.srv == nil {
		return nil, errors.New("cluster: Share before Join")
	}
	if !validName(topic) {
		return nil, fmt.Errorf("cluster: topic %q: use letters, digits, '-' and '_'", topic)
	}
	subject := n.shareSubject(topic)
	n.mu.Lock()
	if n.shares == nil {
		n.shares = make(map[string]func([]byte))
	}
	if _, dup := n.shares[subject]; dup {
		n.mu.Unlock()
		return nil, fmt.Errorf("cluster: topic %q shared twice", topic)
	}
	n.shares[subject] = recv
	n.mu.Unlock()
	s, err := n.Conn.ChanSubscribe(subject, n.inbox)
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe %s: %w", subject, err)
	}
	n.mu.Lock()
	n.subs = append(n.subs, s)
	n.mu.Unlock()
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
	recv := n.shares[m.Subject]
	n.mu.Unlock()
	if recv != nil {
		recv(m.Data[i+1:])
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
