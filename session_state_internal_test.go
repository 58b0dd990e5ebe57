package treff

import "testing"

// TestSessionStateAfterEnd checks that a session's module state is gone
// once the session ended, and that nothing sets it again.
func TestSessionStateAfterEnd(t *testing.T) {
	k := NewSessionState[string]()
	other := NewSessionState[string]()
	s := &Session{}
	k.Set(s, "v")
	other.Set(s, "w")
	if v, ok := k.Get(s); !ok || v != "v" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	k.Delete(s)
	if _, ok := k.Get(s); ok {
		t.Error("Get after Delete found a value")
	}
	if v, _ := other.Get(s); v != "w" {
		t.Errorf("another state's value = %q after Delete, want w", v)
	}
	s.dropValues()
	if _, ok := other.Get(s); ok {
		t.Error("state still set after the session ended")
	}
	k.Set(s, "late")
	if _, ok := k.Get(s); ok {
		t.Error("Set after the end kept a value")
	}
	if v := k.Update(s, func(string, bool) string { return "late" }); v != "" {
		t.Errorf("Update after the end = %q, want \"\"", v)
	}
}
