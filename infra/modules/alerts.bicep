// Log search alert rules over the connector's own telemetry in Application Insights (shared/telemetry.py;
// the names are in docs/telemetry.md). Severities follow the environment type: prod pages (Error/Warning),
// test, demo and dev inform (Informational/Verbose).
// https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
metadata description = 'Alert rules of the connector, with severities from the environment type.'

@description('Required. Prefix of the alert rules\' names.')
param namePrefix string

@description('Optional. Location of the alert rules.')
param location string = resourceGroup().location

@description('Required. The environment type (test, prod, demo, dev); prod alerts are more severe.')
@allowed([
  'test'
  'prod'
  'demo'
  'dev'
])
param environmentType string

@description('Required. Resource ID of the Application Insights component the rules query.')
param applicationInsightsResourceId string

@description('Optional. Email addresses notified; an action group is created when any is given.')
param emailAddresses array = []

@description('Optional. Hours within which each task must have a successful run, by task name.')
param taskRunWindowHours object = {}

@description('Optional. Hours within which any other task must have a successful run (the rule looks back 48 hours).')
@minValue(1)
@maxValue(48)
param defaultRunWindowHours int = 26

@description('Optional. Share of failed activity calls (0-1) over 15 minutes that raises an alert.')
param activityFailureRate string = '0.1'

@description('Optional. Fewest activity calls in 15 minutes before the failure rate counts.')
@minValue(1)
param activityMinimumCalls int = 5

@description('Optional. Days before a Graph client secret or certificate expires that raise an alert.')
@minValue(1)
param credentialExpiryDays int = 30

@description('Optional. Tags of the resources.')
param tags object = {}

var isProd = environmentType == 'prod'
var severityFailure = isProd ? 1 : 3
var severityWarning = isProd ? 2 : 4

var runFinished = 'traces | where tostring(customDimensions["connector.event"]) == "run.finished" | extend task = tostring(customDimensions.task), run_id = tostring(customDimensions.run_id), status = tostring(customDimensions.status), trigger = tostring(customDimensions.trigger)'

var rules = [
  {
    name: 'failed-scheduled-run'
    description: 'A run nobody started by hand failed (the schedule\'s, or one a change notification started): Graph, credentials, configuration or storage; see the run history and the trace of the run.'
    severity: severityFailure
    frequency: 'PT5M'
    window: 'PT15M'
    query: '${runFinished} | where status == "failed" and trigger in ("timer", "notification") | summarize failures = count(), last_run = max(timestamp), run_ids = make_set(run_id, 5) by task'
  }
  {
    name: 'run-held-by-deletion-guard'
    description: 'A run removed more records than the task\'s deletion threshold allows and was held: nothing was delivered; confirm or fix the source, then release it.'
    severity: severityFailure
    frequency: 'PT5M'
    window: 'PT15M'
    query: '${runFinished} | where status == "held" | summarize held = count(), last_run = max(timestamp), run_ids = make_set(run_id, 5) by task'
  }
  {
    name: 'failed-delivery'
    description: 'Delivering a run\'s changes to the platform\'s web API failed; the changes are offered again on the next run.'
    severity: severityFailure
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'traces | where tostring(customDimensions["connector.event"]) == "delivery.finished" and tostring(customDimensions.outcome) == "failed" | summarize failures = count() by task = tostring(customDimensions.task)'
  }
  {
    name: 'failing-activities'
    description: 'An activity (write-side HTTP call) failed for more than the allowed share of its calls over 15 minutes.'
    severity: severityFailure
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics | where name == "connector.activity.calls" | extend activity = tostring(customDimensions.activity), outcome = tostring(customDimensions.outcome) | summarize calls = sum(value), failures = sumif(value, outcome == "failed") by activity | where calls >= ${activityMinimumCalls} and failures / calls > ${activityFailureRate}'
  }
  {
    name: 'sustained-graph-throttling'
    description: 'Graph answered 429 (throttled) in each 5-minute period of the last 15 minutes: runs slow down and may miss their deadline; spread schedules or reduce GRAPH_CONCURRENCY.'
    severity: severityWarning
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics | where name == "connector.graph.throttled" and value > 0 | summarize periods = dcount(bin(timestamp, 5m)), throttled = sum(value) by task = tostring(customDimensions.task) | where periods >= 3'
  }
  {
    name: 'task-without-successful-run'
    description: 'A task has had no successful run within its window (taskRunWindowHours, or defaultRunWindowHours): it fails, is held, or no longer runs.'
    severity: severityFailure
    frequency: 'PT1H'
    window: 'P2D'
    query: 'let windows = dynamic(${string(taskRunWindowHours)}); ${runFinished} | where trigger == "timer" | summarize last_success = maxif(timestamp, status == "succeeded"), last_run = max(timestamp) by task | extend window_hours = coalesce(todouble(windows[task]), todouble(${defaultRunWindowHours})) | where isnull(last_success) or last_success < ago(1h * window_hours)'
  }
  {
    name: 'credential-expiring'
    description: 'A Graph client secret or certificate the connector uses expires within ${credentialExpiryDays} days (or has expired): renew it and update the reference.'
    severity: severityWarning
    frequency: 'PT6H'
    window: 'P1D'
    query: 'traces | where tostring(customDimensions["connector.event"]) == "credential.expiry" | extend connector = tostring(customDimensions.connector), credential_kind = tostring(customDimensions.credential_kind), key_id = tostring(customDimensions.key_id), days_remaining = todouble(customDimensions.days_remaining) | where days_remaining <= ${credentialExpiryDays} | summarize days_remaining = min(days_remaining) by connector, credential_kind, key_id'
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(emailAddresses)) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('conn${namePrefix}', 12)
    enabled: true
    emailReceivers: [
      for (address, i) in emailAddresses: {
        name: 'email-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: '${namePrefix}: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsightsResourceId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: empty(emailAddresses) ? [] : [actionGroup.id]
        customProperties: {
          environmentType: environmentType
        }
      }
    }
  }
]

@description('The resource IDs of the alert rules.')
output ALERT_RULE_IDS array = [for (rule, i) in rules: alertRules[i].id]
