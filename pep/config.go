package pep

import (
	"slices"
	"strconv"
	"strings"

	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Node configuration fields (XEP-0060 section 16.4.4) the module knows.
// Other fields of a submitted form are ignored.
const (
	fieldAccess        = "pubsub#access_model"
	fieldPersist       = "pubsub#persist_items"
	fieldMaxItems      = "pubsub#max_items"
	fieldNotifyRetract = "pubsub#notify_retract"
	fieldNotifyDelete  = "pubsub#notify_delete"
	fieldTitle         = "pubsub#title"
	fieldRosterGroups  = "pubsub#roster_groups_allowed"
	fieldPublishModel  = "pubsub#publish_model"
)

var publishModels = []string{storage.PublishPublishers, storage.PublishSubscribers, storage.PublishOpen}

var accessModels = []string{storage.AccessOpen, storage.AccessPresence, storage.AccessRoster, storage.AccessWhitelist}

func parseBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

// parseMax parses a pubsub#max_items value: "max" or a positive number.
func parseMax(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return storage.PEPMaxItemsMax, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

func formatMax(n int) string {
	if n == storage.PEPMaxItemsMax || n <= 0 {
		return "max"
	}
	return strconv.Itoa(n)
}

func formatBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

var errNotAcceptable = stanza.NotAcceptable

// applyValue sets one configuration field; unknown fields are ignored.
func applyValue(cfg *storage.PEPNodeConfig, field string, values []string) error {
	v := ""
	if len(values) > 0 {
		v = values[0]
	}
	switch field {
	case fieldAccess:
		if !slices.Contains(accessModels, v) {
			return stanza.NotAcceptable.WithText("unsupported access model")
		}
		cfg.AccessModel = v
	case fieldPersist, fieldNotifyRetract, fieldNotifyDelete:
		b, ok := parseBool(v)
		if !ok {
			return errNotAcceptable
		}
		switch field {
		case fieldPersist:
			cfg.PersistItems = b
		case fieldNotifyRetract:
			cfg.NotifyRetract = b
		default:
			cfg.NotifyDelete = b
		}
	case fieldMaxItems:
		n, ok := parseMax(v)
		if !ok {
			return errNotAcceptable
		}
		cfg.MaxItems = n
	case fieldTitle:
		cfg.Title = v
	case fieldPublishModel:
		if !slices.Contains(publishModels, v) {
			return stanza.NotAcceptable.WithText("unsupported publish model")
		}
		cfg.PublishModel = v
	case fieldRosterGroups:
		cfg.RosterGroups = slices.Clone(values)
	}
	return nil
}

// applyOptions applies publish-options (or a submitted configuration) to
// cfg.
func applyOptions(cfg *storage.PEPNodeConfig, opts map[string]string) error {
	for k, v := range opts {
		if err := applyValue(cfg, k, []string{v}); err != nil {
			return err
		}
	}
	return nil
}

// applyForm applies a submitted node_config form to cfg.
func applyForm(cfg *storage.PEPNodeConfig, f *dataform.Submitted) error {
	if f == nil {
		return nil
	}
	if f.Type != "" && f.Type != "submit" {
		return errNotAcceptable
	}
	for k, vs := range f.Values() {
		if err := applyValue(cfg, k, vs); err != nil {
			return err
		}
	}
	return nil
}

// optionsOf returns the publish-options fields the module checks, by field
// name.
func optionsOf(f *dataform.Submitted) map[string]string {
	if f == nil {
		return nil
	}
	opts := map[string]string{}
	for k, vs := range f.Values() {
		switch k {
		case fieldAccess, fieldPersist, fieldMaxItems, fieldNotifyRetract, fieldNotifyDelete, fieldPublishModel:
			v := ""
			if len(vs) > 0 {
				v = vs[0]
			}
			opts[k] = v
		}
	}
	return opts
}

// errPrecondition is the XEP-0060 7.1.5 answer to publish-options that the
// existing node's configuration does not match.
var errPrecondition = pubsubError(stanza.Conflict, "precondition-not-met")

// preconditions checks publish-options against an existing node's
// configuration.
func preconditions(cfg storage.PEPNodeConfig, opts map[string]string) error {
	want := cfg
	if err := applyOptions(&want, opts); err != nil {
		return errPrecondition
	}
	if want.AccessModel != cfg.AccessModel || want.PersistItems != cfg.PersistItems ||
		want.MaxItems != cfg.MaxItems || want.NotifyRetract != cfg.NotifyRetract || want.NotifyDelete != cfg.NotifyDelete ||
		publishModel(want) != publishModel(cfg) {
		return errPrecondition
	}
	return nil
}

// publishModel returns the node's publish model ("" is publishers).
func publishModel(cfg storage.PEPNodeConfig) string {
	if cfg.PublishModel == "" {
		return storage.PublishPublishers
	}
	return cfg.PublishModel
}

// appendConfigForm appends the node_config form describing cfg.
func appendConfigForm(b []byte, cfg storage.PEPNodeConfig) []byte {
	access := cfg.AccessModel
	if access == "" {
		access = storage.AccessPresence
	}
	groups := cfg.RosterGroups
	f := dataform.Form{Fields: []dataform.Field{
		dataform.FormType(NSConfig),
		{Var: fieldTitle, Type: "text-single", Label: "A friendly name for the node", Values: []string{cfg.Title}},
		{Var: fieldAccess, Type: "list-single", Label: "Who may retrieve items", Values: []string{access}, Options: accessModels},
		{Var: fieldPublishModel, Type: "list-single", Label: "Who may publish items", Values: []string{publishModel(cfg)}, Options: publishModels},
		{Var: fieldRosterGroups, Type: "list-multi", Label: "Roster groups allowed (roster access model)", Values: groups},
		{Var: fieldPersist, Type: "boolean", Label: "Persist items to storage", Values: []string{formatBool(cfg.PersistItems)}},
		{Var: fieldMaxItems, Type: "text-single", Label: "Max number of items to persist ('max' for the service's limit)", Values: []string{formatMax(cfg.MaxItems)}},
		{Var: fieldNotifyRetract, Type: "boolean", Label: "Notify when items are removed", Values: []string{formatBool(cfg.NotifyRetract)}},
		{Var: fieldNotifyDelete, Type: "boolean", Label: "Notify when the node is deleted or purged", Values: []string{formatBool(cfg.NotifyDelete)}},
	}}
	return f.Append(b, "form")
}
