package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/treff-im/treff/storage"
)

// Record encoding.
//
// Every value starts with one byte naming its format, so a later version
// can change a record's layout and still read the old one. The JID a record
// belongs to is its key and is not repeated in the value. Integers are
// encoding/binary varints, strings and byte slices are a uvarint length
// followed by the bytes, and times are a varint of Unix seconds followed by
// a uvarint of nanoseconds, decoded in UTC.
//
// Offline messages, written on a hot path and read in bulk, use a fixed
// header instead so that encoding is one allocation and a copy:
//
//	format (1 byte) | Unix seconds (8 bytes, big endian, two's complement) |
//	nanoseconds (4 bytes, big endian) | stanza (rest of the value)
//
// Nothing here uses reflection; the formats are small enough to write by
// hand and keep the database independent of Go's struct layout.
const (
	accountV1    = 1
	accountV2    = 2 // V1 and suspension (time, reason) and approval time
	rosterItemV1 = 1
	offlineV1    = 1
)

// offlineHeader is the length of an offline message value before the stanza.
const offlineHeader = 1 + 8 + 4

// Roster item flag bits.
const (
	flagPendingOut = 1 << iota
	flagPendingIn
	flagApproved
)

// errCorrupt reports a value that cannot be decoded.
var errCorrupt = errors.New("corrupt record")

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// encodeAccount encodes a without its JID.
func encodeAccount(a storage.Account) []byte {
	n := 1 + 2*12 + 1
	for _, c := range a.Credentials {
		n += 5*binary.MaxVarintLen64 + len(c.Mechanism) + len(c.Salt) + len(c.StoredKey) + len(c.ServerKey)
	}
	b := make([]byte, 0, n)
	v2 := !a.Suspended.IsZero() || a.SuspendReason != "" || !a.Approved.IsZero()
	if v2 {
		b = append(b, accountV2)
	} else {
		b = append(b, accountV1)
	}
	b = appendTime(b, a.Created)
	b = appendTime(b, a.LastLogin)
	if v2 {
		b = appendTime(b, a.Suspended)
		b = appendString(b, a.SuspendReason)
		b = appendTime(b, a.Approved)
	}
	b = binary.AppendUvarint(b, uint64(len(a.Credentials)))
	for _, c := range a.Credentials {
		b = appendString(b, c.Mechanism)
		b = appendBytes(b, c.Salt)
		b = binary.AppendVarint(b, int64(c.Iterations))
		b = appendBytes(b, c.StoredKey)
		b = appendBytes(b, c.ServerKey)
	}
	return b
}

// decodeAccount decodes the account stored under jid. The result shares no
// memory with v.
func decodeAccount(jid string, v []byte) (storage.Account, error) {
	d := decoder{b: v}
	f := d.byte()
	if f != accountV1 && f != accountV2 && d.err == nil {
		return storage.Account{}, fmt.Errorf("account %q: unknown record format %d: %w", jid, f, errCorrupt)
	}
	a := storage.Account{JID: jid}
	a.Created = d.time()
	a.LastLogin = d.time()
	if f == accountV2 {
		a.Suspended = d.time()
		a.SuspendReason = d.string()
		a.Approved = d.time()
	}
	if n := d.count(); n > 0 {
		a.Credentials = make([]storage.Credential, n)
		for i := range a.Credentials {
			c := &a.Credentials[i]
			c.Mechanism = d.string()
			c.Salt = d.bytes()
			c.Iterations = int(d.varint())
			c.StoredKey = d.bytes()
			c.ServerKey = d.bytes()
		}
	}
	if err := d.finish(); err != nil {
		return storage.Account{}, fmt.Errorf("account %q: %w", jid, err)
	}
	return a, nil
}

// encodeRosterItem encodes it without its JID.
func encodeRosterItem(it storage.RosterItem) []byte {
	n := 1 + binary.MaxVarintLen64 + len(it.Name) + 1 + len(it.Subscription) + 1 + binary.MaxVarintLen64
	for _, g := range it.Groups {
		n += binary.MaxVarintLen64 + len(g)
	}
	b := make([]byte, 0, n)
	b = append(b, rosterItemV1)
	b = appendString(b, it.Name)
	b = appendString(b, string(it.Subscription))
	var flags byte
	if it.PendingOut {
		flags |= flagPendingOut
	}
	if it.PendingIn {
		flags |= flagPendingIn
	}
	if it.Approved {
		flags |= flagApproved
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(it.Groups)))
	for _, g := range it.Groups {
		b = appendString(b, g)
	}
	return b
}

// decodeRosterItem decodes the item stored under contact. The result shares
// no memory with v.
func decodeRosterItem(contact string, v []byte) (storage.RosterItem, error) {
	d := decoder{b: v}
	if f := d.byte(); f != rosterItemV1 && d.err == nil {
		return storage.RosterItem{}, fmt.Errorf("roster item %q: unknown record format %d: %w", contact, f, errCorrupt)
	}
	it := storage.RosterItem{JID: contact}
	it.Name = d.string()
	it.Subscription = storage.Subscription(d.string())
	flags := d.byte()
	if flags&^(flagPendingOut|flagPendingIn|flagApproved) != 0 {
		d.fail()
	}
	it.PendingOut = flags&flagPendingOut != 0
	it.PendingIn = flags&flagPendingIn != 0
	it.Approved = flags&flagApproved != 0
	if n := d.count(); n > 0 {
		it.Groups = make([]string, n)
		for i := range it.Groups {
			it.Groups[i] = d.string()
		}
	}
	if err := d.finish(); err != nil {
		return storage.RosterItem{}, fmt.Errorf("roster item %q: %w", contact, err)
	}
	return it, nil
}

// encodeOffline encodes the time and stanza of an offline message; its ID is
// the key.
func encodeOffline(received time.Time, stanza []byte) []byte {
	b := make([]byte, offlineHeader, offlineHeader+len(stanza))
	b[0] = offlineV1
	binary.BigEndian.PutUint64(b[1:9], uint64(received.Unix()))
	binary.BigEndian.PutUint32(b[9:13], uint32(received.Nanosecond()))
	return append(b, stanza...)
}

// decodeOffline decodes the message stored under key. The result shares no
// memory with key or v.
func decodeOffline(key, v []byte) (storage.OfflineMessage, error) {
	if len(key) != 8 {
		return storage.OfflineMessage{}, fmt.Errorf("offline message key %x: %w", key, errCorrupt)
	}
	id := binary.BigEndian.Uint64(key)
	if len(v) < offlineHeader || v[0] != offlineV1 {
		return storage.OfflineMessage{}, fmt.Errorf("offline message %d: %w", id, errCorrupt)
	}
	nsec := binary.BigEndian.Uint32(v[9:13])
	if nsec >= 1e9 {
		return storage.OfflineMessage{}, fmt.Errorf("offline message %d: %w", id, errCorrupt)
	}
	m := storage.OfflineMessage{
		ID:       id,
		Received: time.Unix(int64(binary.BigEndian.Uint64(v[1:9])), int64(nsec)).UTC(),
	}
	if len(v) > offlineHeader {
		m.Stanza = append([]byte(nil), v[offlineHeader:]...)
	}
	return m, nil
}

// offlineKey returns the key of the offline message with the given ID. Keys
// are big endian so that bbolt's byte order is arrival order.
func offlineKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id)
}

// decoder reads a record. After the first error every method returns zero
// values and finish reports the error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads the length of a list whose elements take at least one byte
// each, so that a corrupt length cannot cause a huge allocation.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

// raw reads a length-prefixed run of bytes without copying it.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// bytes reads a length-prefixed byte slice into new memory; empty slices
// decode as nil.
func (d *decoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) string() string { return string(d.raw()) }

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// finish reports a decoding error or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes: %w", len(d.b), errCorrupt)
	}
	return d.err
}
