package blocking

import (
	"context"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Spam reporting (XEP-0377 0.3): a <block/> item may carry a report of why
// the user blocks the JID; the blocking module hands it to OnReport (for
// the server's admins) after the block is in place.

// Namespaces and reasons of XEP-0377.
const (
	NSReporting  = "urn:xmpp:reporting:1"
	ReasonSpam   = "urn:xmpp:reporting:spam"
	ReasonAbuse  = "urn:xmpp:reporting:abuse"
	nsStanzaID   = "urn:xmpp:sid:0"
	maxReportTxt = 2000 // bytes of a report's text kept
	maxReportIDs = 20   // reported message ids kept per report
)

// Report is one XEP-0377 report, as a user made it.
type Report struct {
	// Reporter is the bare JID of the user who blocked and reported.
	Reporter jid.JID
	// Reported is the JID reported (as blocked).
	Reported jid.JID
	// Reason is ReasonSpam, ReasonAbuse or another reason URI the client
	// sent.
	Reason string
	// Text is what the reporter wrote, if anything (at most 2000 bytes).
	Text string
	// StanzaIDs are the ids of reported messages (XEP-0359), as
	// "by id" pairs, if the reporter gave any; never their content.
	StanzaIDs []StanzaID
	// Time is when the report arrived.
	Time time.Time
}

// StanzaID is a XEP-0359 stanza id named in a report.
type StanzaID struct {
	By, ID string
}

type reportElem struct {
	Reason string `xml:"reason,attr"`
	Text   []struct {
		Value string `xml:",chardata"`
	} `xml:"urn:xmpp:reporting:1 text"`
	IDs []struct {
		By string `xml:"by,attr"`
		ID string `xml:"id,attr"`
	} `xml:"urn:xmpp:sid:0 stanza-id"`
}

// reports returns the reports of a <block/> request's items.
func (m *Module) reports(user jid.JID, req request) []Report {
	var out []Report
	now := time.Now().UTC()
	for _, it := range req.Items {
		if it.Report == nil || it.JID == nil {
			continue
		}
		j, err := jid.Parse(*it.JID)
		if err != nil {
			continue
		}
		r := Report{Reporter: user.Bare(), Reported: j, Reason: strings.TrimSpace(it.Report.Reason), Time: now}
		if r.Reason == "" {
			r.Reason = ReasonSpam
		}
		for _, t := range it.Report.Text {
			if s := strings.TrimSpace(t.Value); s != "" {
				r.Text = cut(s, maxReportTxt)
				break
			}
		}
		for _, id := range it.Report.IDs {
			if id.ID != "" && len(r.StanzaIDs) < maxReportIDs {
				r.StanzaIDs = append(r.StanzaIDs, StanzaID{By: cut(id.By, 1024), ID: cut(id.ID, 256)})
			}
		}
		out = append(out, r)
	}
	return out
}

// report hands the reports to OnReport.
func (m *Module) report(ctx context.Context, rs []Report) {
	if m.OnReport == nil {
		return
	}
	for _, r := range rs {
		m.OnReport(ctx, r)
	}
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
