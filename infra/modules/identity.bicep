// The user-assigned managed identity the Function App runs as: storage, Key Vault, telemetry ingestion
// and (where the customer chooses it) Microsoft Graph.
metadata description = 'User-assigned managed identity of the connector.'

@description('Required. Name of the managed identity.')
param name string

@description('Optional. Location of the managed identity.')
param location string = resourceGroup().location

@description('Optional. Tags of the resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('The resource ID of the managed identity.')
output RESOURCE_ID string = identity.id

@description('The client (application) ID of the managed identity.')
output CLIENT_ID string = identity.properties.clientId

@description('The principal (object) ID of the managed identity.')
output PRINCIPAL_ID string = identity.properties.principalId

@description('The name of the managed identity.')
output NAME string = identity.name
