package last

import "time"

// SetNow sets the module's clock (time.Now unless set), for tests that
// check the seconds it reports; call it before the server starts.
func (m *Module) SetNow(now func() time.Time) { m.now = now }
