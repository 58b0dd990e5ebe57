package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/treff-im/treff/trefftest"
)

// TestChatPageRoomHistory: without message archives, the bundled
// Converse.js is told to ask rooms for their history on joining
// (muc_history_max_stanzas, the rooms' muc_max_history); with archives
// it catches up through MAM and the setting is left out. The status
// page tells users what a room keeps.
func TestChatPageRoomHistory(t *testing.T) {
	for _, tc := range []struct {
		archive string
		want    string // "" for none
	}{
		{"no", `"muc_history_max_stanzas":7`},
		{"yes", ""},
	} {
		t.Run("archive="+tc.archive, func(t *testing.T) {
			ts := trefftest.NewServer(t, nil)
			cfg := Default()
			for k, v := range map[string]string{"archive": tc.archive, "muc_max_history": "7", "web_client": t.TempDir()} {
				if err := cfg.Set(k, v); err != nil {
					t.Fatal(err)
				}
			}
			w, err := newWeb(cfg, ts.Server, nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/chat/", nil))
			page := rec.Body.String()
			if rec.Code != http.StatusOK || !strings.Contains(page, "converse.initialize(") {
				t.Fatalf("/chat/: HTTP %d\n%s", rec.Code, page)
			}
			if got := strings.Contains(page, "muc_history_max_stanzas"); got != (tc.want != "") || tc.want != "" && !strings.Contains(page, tc.want) {
				t.Errorf("/chat/ with archive=%s, want %q:\n%s", tc.archive, tc.want, page)
			}
			rec = httptest.NewRecorder()
			w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if !strings.Contains(rec.Body.String(), "Each group chat keeps its last 7 messages") {
				t.Errorf("the status page does not say what rooms keep:\n%s", rec.Body.String())
			}
		})
	}
}
