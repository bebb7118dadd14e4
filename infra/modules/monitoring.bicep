// Log Analytics and workspace-based Application Insights, both with local (key) authentication off:
// telemetry is ingested with Microsoft Entra ID (the app's managed identity, Monitoring Metrics Publisher).
// https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
metadata description = 'Log Analytics workspace and Application Insights with local authentication disabled.'

@description('Required. Name of the Log Analytics workspace.')
param workspaceName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Optional. Location of the resources.')
param location string = resourceGroup().location

@description('Optional. Days the workspace keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 90

@description('Optional. Tags of the resources.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
    RetentionInDays: retentionInDays
  }
}

@description('The resource ID of the Log Analytics workspace.')
output WORKSPACE_RESOURCE_ID string = workspace.id

@description('The resource ID of Application Insights.')
output APPLICATION_INSIGHTS_RESOURCE_ID string = applicationInsights.id

@description('The name of Application Insights.')
output APPLICATION_INSIGHTS_NAME string = applicationInsights.name

@description('The connection string of Application Insights (an endpoint and an instrumentation key that is not a secret once local authentication is off).')
output APPLICATION_INSIGHTS_CONNECTION_STRING string = applicationInsights.properties.ConnectionString
