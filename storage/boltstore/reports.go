package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Reports = (*Store)(nil)

// bucketReports holds key = 8-byte big-endian sequence number, value =
// an encoded report (reportV1).
var bucketReports = []byte("reports")

const reportV1 = 1

func encodeReport(r storage.Report) []byte {
	b := []byte{reportV1}
	b = appendTime(b, r.Time)
	b = appendString(b, r.Reporter)
	b = appendString(b, r.Reported)
	b = appendString(b, r.Reason)
	b = appendString(b, r.Text)
	b = binary.AppendUvarint(b, uint64(len(r.MessageIDs)))
	for _, id := range r.MessageIDs {
		b = appendString(b, id)
	}
	return b
}

func decodeReport(id string, v []byte) (storage.Report, error) {
	d := decoder{b: v}
	if f := d.byte(); f != reportV1 && d.err == nil {
		return storage.Report{}, fmt.Errorf("report %s: unknown record format %d: %w", id, f, errCorrupt)
	}
	r := storage.Report{ID: id}
	r.Time = d.time()
	r.Reporter = d.string()
	r.Reported = d.string()
	r.Reason = d.string()
	r.Text = d.string()
	if n := d.count(); n > 0 {
		r.MessageIDs = make([]string, n)
		for i := range r.MessageIDs {
			r.MessageIDs[i] = d.string()
		}
	}
	if err := d.finish(); err != nil {
		return storage.Report{}, fmt.Errorf("report %s: %w", id, err)
	}
	return r, nil
}

func reportID(seq uint64) string { return fmt.Sprintf("%016d", seq) }

// AddReport implements storage.Reports.
func (s *Store) AddReport(ctx context.Context, r storage.Report) (string, error) {
	var id string
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketReports)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		id = reportID(seq)
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), encodeReport(r))
	})
	if err != nil {
		return "", fail(err, "add report")
	}
	return id, nil
}

// ListReports implements storage.Reports.
func (s *Store) ListReports(ctx context.Context) ([]storage.Report, error) {
	var out []storage.Report
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("report key: %w", errCorrupt)
			}
			r, err := decodeReport(reportID(binary.BigEndian.Uint64(k)), v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "list reports")
	}
	return out, nil
}

// DeleteReport implements storage.Reports.
func (s *Store) DeleteReport(ctx context.Context, id string) error {
	seq, perr := strconv.ParseUint(id, 10, 64)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		if b == nil || perr != nil {
			return storage.ErrNotFound
		}
		k := binary.BigEndian.AppendUint64(nil, seq)
		if b.Get(k) == nil {
			return storage.ErrNotFound
		}
		return b.Delete(k)
	})
	if err != nil {
		return fail(err, "delete report %q", id)
	}
	return nil
}
