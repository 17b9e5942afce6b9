package subscriptions

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// NotificationType is the kind of a notification (backport
// SubscriptionStatus.type, R5 subscription-notification-type).
type NotificationType string

const (
	TypeHandshake   NotificationType = "handshake"
	TypeHeartbeat   NotificationType = "heartbeat"
	TypeEvent       NotificationType = "event-notification"
	TypeQueryStatus NotificationType = "query-status"
	TypeQueryEvent  NotificationType = "query-event"
)

// StatusInfo is what a SubscriptionStatus reports besides its events.
type StatusInfo struct {
	Status Status
	// EventsSinceStart is the subscription's event counter.
	EventsSinceStart int64
	// Error is the last delivery error, when status is error.
	Error string
}

// NotificationBundle builds the R4 backport notification Bundle
// (backport-subscription-notification-r4): a Bundle of type history whose
// first entry is the SubscriptionStatus as a Parameters resource
// (backport-subscription-status-r4), followed by the focus resources the
// payload content asks for. base is the server's FHIR base URL. $status
// results use type searchset (TypeQueryStatus).
func NotificationBundle(s *Subscription, typ NotificationType, st StatusInfo, ns []*Notification, base string) []byte {
	subRef := base + "/Subscription/" + s.ID
	params := []jsonObj{
		{"name": "subscription", "valueReference": jsonObj{"reference": subRef}},
	}
	if s.Topic != "" {
		params = append(params, jsonObj{"name": "topic", "valueCanonical": s.Topic})
	}
	params = append(params,
		jsonObj{"name": "status", "valueCode": string(st.Status)},
		jsonObj{"name": "type", "valueCode": string(typ)},
		jsonObj{"name": "events-since-subscription-start", "valueString": strconv.FormatInt(st.EventsSinceStart, 10)},
	)
	var resources []jsonObj
	for _, n := range ns {
		part := []jsonObj{
			{"name": "event-number", "valueString": strconv.FormatInt(n.EventNumber, 10)},
			{"name": "timestamp", "valueInstant": n.Time.UTC().Format(time.RFC3339Nano)},
		}
		if s.Content != ContentEmpty && n.Focus != "" {
			part = append(part, jsonObj{"name": "focus", "valueReference": jsonObj{"reference": base + "/" + n.Focus}})
		}
		params = append(params, jsonObj{"name": "notification-event", "part": part})
		if s.Content == ContentFullResource && n.Focus != "" {
			e := jsonObj{"fullUrl": base + "/" + n.Focus}
			method, status := n.Method, "200"
			if method == "" {
				method = "PUT"
			}
			if method == "POST" {
				status = "201"
			}
			if n.Resource != nil && method != "DELETE" {
				e["resource"] = json.RawMessage(n.Resource)
			}
			e["request"] = jsonObj{"method": method, "url": n.Focus}
			e["response"] = jsonObj{"status": status}
			resources = append(resources, e)
		}
	}
	if st.Error != "" {
		params = append(params, jsonObj{"name": "error", "valueCodeableConcept": jsonObj{"text": st.Error}})
	}
	bundleType := "history"
	if typ == TypeQueryStatus {
		bundleType = "searchset"
	}
	statusEntry := jsonObj{
		"fullUrl":  "urn:uuid:" + newUUID(),
		"resource": jsonObj{"resourceType": "Parameters", "meta": jsonObj{"profile": []string{ProfileStatus}}, "parameter": params},
	}
	if bundleType == "history" {
		statusEntry["request"] = jsonObj{"method": "GET", "url": "Subscription/" + s.ID + "/$status"}
		statusEntry["response"] = jsonObj{"status": "200"}
	} else {
		statusEntry["search"] = jsonObj{"mode": "match"}
	}
	b := jsonObj{
		"resourceType": "Bundle",
		"id":           newUUID(),
		"type":         bundleType,
		"timestamp":    time.Now().UTC().Format(time.RFC3339Nano),
		"entry":        append([]jsonObj{statusEntry}, resources...),
	}
	if bundleType == "history" {
		b["meta"] = jsonObj{"profile": []string{ProfileNotification}}
	} else {
		b["total"] = 1
	}
	out, err := json.Marshal(b)
	if err != nil {
		panic("subscriptions: marshal bundle: " + err.Error()) // only maps, strings and valid RawMessage
	}
	return out
}

type jsonObj = map[string]any

func newUUID() string { return uuid.NewString() }
