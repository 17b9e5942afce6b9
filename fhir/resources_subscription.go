package fhir

// Subscription returns the Subscription type with its R4 search parameters
// (http://hl7.org/fhir/R4/subscription.html#search). Topic-based
// subscriptions of the Subscriptions R5 Backport IG on R4 keep the topic's
// canonical URL in Subscription.criteria, so the criteria parameter finds
// them by topic too.
func Subscription() *ResourceType {
	return &ResourceType{
		Name: "Subscription",
		Params: []*SearchParam{
			{Name: "status", Type: ParamToken, Path: "Subscription.status", Description: "The current state of the subscription", Definition: sp + "Subscription-status"},
			{Name: "url", Type: ParamURI, Path: "Subscription.channel.endpoint", Description: "The uri that will receive the notifications", Definition: sp + "Subscription-url"},
			{Name: "criteria", Type: ParamString, Path: "Subscription.criteria", Description: "The search rules used to determine when to send a notification", Definition: sp + "Subscription-criteria"},
			{Name: "type", Type: ParamToken, Path: "Subscription.channel.type", Description: "The type of channel for the sent notifications", Definition: sp + "Subscription-type"},
			{Name: "payload", Type: ParamToken, Path: "Subscription.channel.payload", Description: "The mime-type of the notification payload", Definition: sp + "Subscription-payload"},
			{Name: "contact", Type: ParamToken, Path: "Subscription.contact", Description: "Contact details for the subscription", Definition: sp + "Subscription-contact"},
		},
	}
}
