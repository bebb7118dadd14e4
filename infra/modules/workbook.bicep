// An Azure Monitor workbook over the connector's telemetry (names in docs/telemetry.md): per task the last
// run's status, extract and load (delivery) status and durations, record counts, throttling and failures;
// per activity the calls, failure rate and latency.
// https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate
metadata description = 'Workbook of the connector\'s runs, deliveries, Graph throttling and activities.'

@description('Required. Display name of the workbook.')
param displayName string

@description('Optional. Location of the workbook.')
param location string = resourceGroup().location

@description('Required. Resource ID of the Application Insights component the workbook queries.')
param applicationInsightsResourceId string

@description('Optional. Tags of the resource.')
param tags object = {}

var runs = 'traces | where tostring(customDimensions["connector.event"]) == "run.finished" | extend task = tostring(customDimensions.task), run_id = tostring(customDimensions.run_id), status = tostring(customDimensions.status), trigger = tostring(customDimensions.trigger), mode = tostring(customDimensions.mode), duration_s = todouble(customDimensions.duration_s), records = tolong(customDimensions.records_written), graph_requests = tolong(customDimensions.graph_requests), throttled = tolong(customDimensions.throttled)'
var deliveries = 'traces | where tostring(customDimensions["connector.event"]) == "delivery.finished" | extend task = tostring(customDimensions.task), outcome = tostring(customDimensions.outcome), duration_s = todouble(customDimensions.duration_s), records = tolong(customDimensions.records)'

// A histogram's rows in customMetrics are aggregates of one export interval: valueSum (the same as value) over
// valueCount measurements, so a mean is sum(valueSum) / sum(valueCount), never avg(value).
var tiles = [
  {
    title: 'Tasks: last run, extract and load'
    visualization: 'table'
    query: '${runs} | summarize arg_max(timestamp, run_id, status, trigger, mode, duration_s, records) by task | join kind=leftouter (${deliveries} | summarize arg_max(timestamp, outcome, duration_s) by task | project task, load_status = outcome, load_duration_s = duration_s, load_at = timestamp) on task | project task, last_run_at = timestamp, run_id, extract_status = status, trigger, mode, extract_duration_s = duration_s, records, load_status, load_duration_s, load_at | order by task asc'
  }
  {
    title: 'Runs per task and status'
    visualization: 'barchart'
    query: '${runs} | summarize runs = count() by task, status'
  }
  {
    title: 'Extract duration per task (seconds)'
    visualization: 'timechart'
    query: 'customMetrics | where name == "connector.run.duration" | summarize duration_s = sum(valueSum) / sum(valueCount) by task = tostring(customDimensions.task), bin(timestamp, 1h)'
  }
  {
    title: 'Records per task and stream'
    visualization: 'table'
    query: 'customMetrics | where name == "connector.run.records" | summarize records = sum(value) by task = tostring(customDimensions.task), stream = tostring(customDimensions.stream), kind = tostring(customDimensions.kind) | order by task asc, stream asc'
  }
  {
    title: 'Graph requests and throttled answers per task'
    visualization: 'timechart'
    query: 'customMetrics | where name in ("connector.graph.requests", "connector.graph.throttled") | summarize total = sum(value) by series = strcat(tostring(customDimensions.task), " ", name), bin(timestamp, 15m)'
  }
  {
    title: 'Deliveries per task and outcome'
    visualization: 'table'
    query: 'customMetrics | where name == "connector.deliveries" | summarize deliveries = sum(value) by task = tostring(customDimensions.task), outcome = tostring(customDimensions.outcome)'
  }
  {
    title: 'Failures (runs and deliveries)'
    visualization: 'table'
    query: 'union (${runs} | where status in ("failed", "held") | project timestamp, task, run_id, what = strcat("run ", status)), (${deliveries} | where outcome == "failed" | project timestamp, task, run_id = tostring(customDimensions.run_id), what = "delivery failed") | order by timestamp desc | take 100'
  }
  {
    title: 'Activities: calls, failure rate, latency'
    visualization: 'table'
    query: 'customMetrics | where name in ("connector.activity.calls", "connector.activity.duration") | extend activity = tostring(customDimensions.activity), outcome = tostring(customDimensions.outcome) | summarize calls = sumif(value, name == "connector.activity.calls"), failures = sumif(value, name == "connector.activity.calls" and outcome == "failed"), latency_ms = sumif(valueSum, name == "connector.activity.duration") / sumif(valueCount, name == "connector.activity.duration"), latency_max_ms = maxif(valueMax, name == "connector.activity.duration") by activity | extend failure_rate = round(todouble(failures) / calls, 3) | order by calls desc'
  }
  {
    title: 'Credentials: days until expiry'
    visualization: 'table'
    query: 'traces | where tostring(customDimensions["connector.event"]) == "credential.expiry" | summarize arg_max(timestamp, *) by connector = tostring(customDimensions.connector), key_id = tostring(customDimensions.key_id) | project connector, credential_kind = tostring(customDimensions.credential_kind), key_id, expires_on = tostring(customDimensions.expires_on), days_remaining = todouble(customDimensions.days_remaining), checked_at = timestamp | order by days_remaining asc'
  }
]

var introItem = {
  type: 1
  name: 'intro'
  content: {
    json: '## Graph connector\nRuns, deliveries and activities of this connector instance, from its telemetry (last 7 days).'
  }
}

var tileItems = [for (tile, i) in tiles: {
  type: 3
  name: 'tile-${i}'
  content: {
    version: 'KqlItem/1.0'
    title: tile.title
    query: tile.query
    size: 0
    timeContext: {
      durationMs: 604800000
    }
    queryType: 0
    resourceType: 'microsoft.insights/components'
    visualization: tile.visualization
  }
}]

var content = {
  version: 'Notebook/1.0'
  items: concat([
    introItem
  ], tileItems)
  fallbackResourceIds: [
    applicationInsightsResourceId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'connector-workbook', displayName)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsResourceId
    serializedData: string(content)
  }
}

@description('The resource ID of the workbook.')
output RESOURCE_ID string = workbook.id
