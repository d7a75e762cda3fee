"""Notification channels: email, Slack, Microsoft Teams, PagerDuty, OpsGenie and signed webhooks."""
