package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// uploadTests run only for stores that implement storage.Uploads.
var uploadTests = []test{
	{name: "CreateGetList", fn: testUploadsCreate},
	{name: "Quota", fn: testUploadsQuota},
	{name: "MarkOnce", fn: testUploadsMarkOnce},
	{name: "Expired", fn: testUploadsExpired},
	{name: "Delete", fn: testUploadsDelete},
	{name: "QuotaRace", fn: testUploadsQuotaRace},
	{name: "CancelledContext", fn: cancelled(uploadCalls)},
	{name: "EmptyJID", fn: emptyJID(uploadCalls)},
}

func uploads(t *testing.T, s storage.Store) storage.Uploads {
	us, ok := s.(storage.Uploads)
	if !ok {
		t.Skip("store does not implement storage.Uploads")
	}
	return us
}

func sameUpload(a, b storage.Upload) bool {
	return a.ID == b.ID && a.Owner == b.Owner && a.Filename == b.Filename && a.Size == b.Size &&
		a.ContentType == b.ContentType && a.Created.Equal(b.Created) && a.Uploaded == b.Uploaded
}

func uploadIDs(us []storage.Upload) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func testUploadsCreate(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	a := storage.Upload{ID: "id-a", Owner: alice, Filename: "café ☕.jpg", Size: 1234, ContentType: "image/jpeg", Created: t2}
	b := storage.Upload{ID: "id-b", Owner: alice, Filename: "notes.txt", Size: 10, ContentType: "text/plain; charset=utf-8", Created: t1, Uploaded: true}
	c := storage.Upload{ID: "id-c", Owner: bob, Filename: "x", Size: 1, ContentType: "application/octet-stream", Created: t1}
	for _, u := range []storage.Upload{a, b, c} {
		must(t, us.CreateUpload(ctx, u, 0), "CreateUpload "+u.ID)
	}
	wantErr(t, us.CreateUpload(ctx, storage.Upload{ID: "id-a", Owner: bob, Size: 1, Created: t1}, 0), storage.ErrExists, "CreateUpload with a taken ID")
	got, err := us.Upload(ctx, "id-a")
	must(t, err, "Upload")
	if !sameUpload(got, a) {
		t.Errorf("Upload = %+v, want %+v", got, a)
	}
	checkUTC(t, got.Created, "Upload.Created")
	_, err = us.Upload(ctx, "id-none")
	wantErr(t, err, storage.ErrNotFound, "Upload of a missing ID")
	list, err := us.ListUploads(ctx, alice)
	must(t, err, "ListUploads")
	if ids := uploadIDs(list); !sameStrings(ids, []string{"id-b", "id-a"}) {
		t.Errorf("ListUploads(alice) = %v, want [id-b id-a] (by Created)", ids)
	} else if !sameUpload(list[0], b) || !sameUpload(list[1], a) {
		t.Errorf("ListUploads(alice) = %+v", list)
	}
	list, err = us.ListUploads(ctx, "nobody@example.org")
	must(t, err, "ListUploads of a user without uploads")
	if len(list) != 0 {
		t.Errorf("ListUploads of a user without uploads = %+v", list)
	}
	n, err := us.UploadUsage(ctx, alice)
	must(t, err, "UploadUsage")
	if n != 1244 {
		t.Errorf("UploadUsage(alice) = %d, want 1244", n)
	}
	if n, _ := us.UploadUsage(ctx, "nobody@example.org"); n != 0 {
		t.Errorf("UploadUsage of a user without uploads = %d", n)
	}
	// A copy returned may be changed without changing the store.
	got.Filename = "changed"
	if again, _ := us.Upload(ctx, "id-a"); again.Filename != a.Filename {
		t.Errorf("changing a returned record changed the store: %q", again.Filename)
	}
}

func testUploadsQuota(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "q1", Owner: alice, Size: 600, Created: t1}, 1000), "CreateUpload within quota")
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "q2", Owner: alice, Size: 400, Created: t1}, 1000), "CreateUpload up to the quota")
	wantErr(t, us.CreateUpload(ctx, storage.Upload{ID: "q3", Owner: alice, Size: 1, Created: t1}, 1000), storage.ErrQuotaExceeded, "CreateUpload over quota")
	if _, err := us.Upload(ctx, "q3"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a refused upload was stored: %v", err)
	}
	// Other users have their own quota; no limit with quota <= 0.
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "q4", Owner: bob, Size: 1000, Created: t1}, 1000), "CreateUpload of another user")
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "q5", Owner: alice, Size: 5000, Created: t1}, 0), "CreateUpload without quota")
	// Deleting frees quota.
	must(t, us.DeleteUpload(ctx, "q5"), "DeleteUpload")
	must(t, us.DeleteUpload(ctx, "q1"), "DeleteUpload")
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "q6", Owner: alice, Size: 600, Created: t1}, 1000), "CreateUpload after a deletion")
}

func testUploadsMarkOnce(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	wantErr(t, us.MarkUploaded(ctx, "none"), storage.ErrNotFound, "MarkUploaded of a missing ID")
	u := storage.Upload{ID: "m", Owner: alice, Filename: "f.bin", Size: 7, ContentType: "application/octet-stream", Created: t3}
	must(t, us.CreateUpload(ctx, u, 0), "CreateUpload")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, exists := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := us.MarkUploaded(ctx, "m")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, storage.ErrExists):
				exists++
			default:
				t.Errorf("MarkUploaded: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || exists != 7 {
		t.Errorf("MarkUploaded by 8 goroutines: %d succeeded, %d got ErrExists; want 1 and 7", wins, exists)
	}
	got, err := us.Upload(ctx, "m")
	must(t, err, "Upload")
	u.Uploaded = true
	if !sameUpload(got, u) {
		t.Errorf("Upload after MarkUploaded = %+v, want %+v", got, u)
	}
}

func testUploadsExpired(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	day := 24 * time.Hour
	recs := []storage.Upload{
		{ID: "old-done", Owner: alice, Size: 1, Created: t3.Add(-40 * day), Uploaded: true},
		{ID: "new-done", Owner: bob, Size: 1, Created: t3.Add(-time.Hour), Uploaded: true},
		{ID: "old-pending", Owner: bob, Size: 1, Created: t3.Add(-time.Hour)},
		{ID: "new-pending", Owner: alice, Size: 1, Created: t3.Add(-time.Minute)},
	}
	for _, u := range recs {
		must(t, us.CreateUpload(ctx, u, 0), "CreateUpload "+u.ID)
	}
	got, err := us.ExpiredUploads(ctx, t3.Add(-30*day), t3.Add(-5*time.Minute))
	must(t, err, "ExpiredUploads")
	ids := uploadIDs(got)
	slices.Sort(ids)
	if !sameStrings(ids, []string{"old-done", "old-pending"}) {
		t.Errorf("ExpiredUploads = %v, want [old-done old-pending]", ids)
	}
	for _, u := range got {
		if i := slices.IndexFunc(recs, func(r storage.Upload) bool { return r.ID == u.ID }); i >= 0 && !sameUpload(u, recs[i]) {
			t.Errorf("ExpiredUploads returned %+v, stored %+v", u, recs[i])
		}
	}
	got, err = us.ExpiredUploads(ctx, t1, t1)
	must(t, err, "ExpiredUploads before everything")
	if len(got) != 0 {
		t.Errorf("ExpiredUploads before all records = %v", uploadIDs(got))
	}
}

func testUploadsDelete(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	for i := range 3 {
		must(t, us.CreateUpload(ctx, storage.Upload{ID: fmt.Sprint("a", i), Owner: alice, Size: 10, Created: t1}, 0), "CreateUpload")
	}
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "b0", Owner: bob, Size: 10, Created: t1}, 0), "CreateUpload")
	must(t, us.DeleteUpload(ctx, "a0"), "DeleteUpload")
	must(t, us.DeleteUpload(ctx, "a0"), "DeleteUpload of a missing record")
	if _, err := us.Upload(ctx, "a0"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Upload after DeleteUpload: %v, want ErrNotFound", err)
	}
	must(t, us.DeleteUploads(ctx, alice), "DeleteUploads")
	must(t, us.DeleteUploads(ctx, alice), "DeleteUploads of a user without uploads")
	if list, _ := us.ListUploads(ctx, alice); len(list) != 0 {
		t.Errorf("uploads left after DeleteUploads: %v", uploadIDs(list))
	}
	if _, err := us.Upload(ctx, "a1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Upload after DeleteUploads: %v, want ErrNotFound", err)
	}
	if n, _ := us.UploadUsage(ctx, alice); n != 0 {
		t.Errorf("UploadUsage after DeleteUploads = %d", n)
	}
	if _, err := us.Upload(ctx, "b0"); err != nil {
		t.Errorf("another user's upload after DeleteUploads: %v", err)
	}
	// The IDs are free again.
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "a1", Owner: bob, Size: 1, Created: t1}, 0), "CreateUpload with a deleted record's ID")
}

// Many goroutines filling one quota: the sum never exceeds it.
func testUploadsQuotaRace(t *testing.T, ctx context.Context, s storage.Store) {
	us := uploads(t, s)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := us.CreateUpload(ctx, storage.Upload{ID: fmt.Sprint("r", i), Owner: alice, Size: 100, Created: t1}, 550)
			if err != nil && !errors.Is(err, storage.ErrQuotaExceeded) {
				t.Errorf("CreateUpload: %v", err)
			}
		}()
	}
	wg.Wait()
	if n, _ := us.UploadUsage(ctx, alice); n != 500 {
		t.Errorf("UploadUsage after 16 racing uploads of 100 bytes with a quota of 550 = %d, want 500", n)
	}
}
