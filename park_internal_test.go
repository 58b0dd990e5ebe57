package treff

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/xmlscan"
)

// chunkConn returns its chunks one per Read.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

func record(body string) []byte {
	return append([]byte{23, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// idleConn hands on one TLS record per Read, keeps what it read past a
// record's end, and parks only at a record boundary with nothing kept.
func TestIdleConnRecords(t *testing.T) {
	r1, r2, r3, empty := record("first"), record("second"), record("third record"), record("")
	all := bytes.Join([][]byte{r1, r2, r3[:7]}, nil)
	cc := &chunkConn{chunks: [][]byte{all, r3[7:], empty, r1}}
	c := &idleConn{Conn: cc, records: true, park: -1}
	var got [][]byte
	parked := false
	for i := 0; i < 20; i++ {
		c.armed = !parked // as the session: arm, park, then read
		p := make([]byte, 100)
		n, err := c.Read(p)
		if parked = errors.Is(err, xmlscan.ErrNoData); parked {
			got = append(got, []byte("PARK"))
			continue
		}
		if err != nil {
			got = append(got, []byte(err.Error()))
			break
		}
		got = append(got, p[:n])
	}
	// One read brings r1, r2 and part of r3: they are handed on one record
	// at a time, with no park while bytes are kept or inside a record.
	want := [][]byte{[]byte("PARK"), r1, r2, r3[:7], r3[7:], []byte("PARK"), empty, []byte("PARK"), r1, []byte("PARK"), []byte("EOF")}
	for i := range want {
		if i >= len(got) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("reads: got %q\nwant %q", got, want)
		}
	}
}
