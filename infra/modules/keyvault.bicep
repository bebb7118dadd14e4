// Key Vault in RBAC mode for a Graph client secret or certificate (where the customer cannot use a managed
// identity for Graph) and the function key of the change-notification endpoint. The connector reads secrets
// at run time with the app's managed identity (Key Vault Secrets User), from {"key_vault": "<vault URI>
// secrets/<name>"} references in its configuration; the platform resolves app settings' Key Vault references.
// https://learn.microsoft.com/azure/key-vault/general/rbac-guide
metadata description = 'Key Vault (Azure RBAC authorization) for Graph credentials and the notification key.'

@description('Required. Name of the key vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Optional. Location of the key vault.')
param location string = resourceGroup().location

@description('Optional. Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Optional. Tags of the resource.')
param tags object = {}

@description('Optional. Name of the secret holding the change-notification function key (the app setting NOTIFICATION_FUNCTION_KEY refers to it).')
param notificationKeySecretName string = 'notification-function-key'

@description('Optional. The change-notification function key; empty: no secret is written here (store it later, README Deploy).')
@secure()
param notificationFunctionKey string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The firewall allows all networks because the Flex Consumption app has no virtual network in this template (no fixed outbound addresses); every call still needs Microsoft Entra ID and an RBAC role.
  // checkov:skip=CKV_AZURE_189: Public network access stays on for the same reason; add a virtual network and a private endpoint to turn it off (README, Deploy).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Written here, before the Function App exists, so the app setting's Key Vault reference resolves at the
// app's first start (App Service caches resolved references). The same value must be a function key of the
// app, which Bicep cannot set on a Flex Consumption app before its code runs: azure.yaml's postdeploy hook
// registers it (infra/hooks/register-notification-key.sh; README, Deploy).
resource notificationKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(notificationFunctionKey)) {
  // checkov:skip=CKV_AZURE_114: contentType is set below (text/plain); checkov's Bicep reader does not see the properties of a conditional resource (tests/infra checks contentType instead).
  // checkov:skip=CKV_AZURE_41: No expiry date: the key lives as long as the app's function key and the Graph subscriptions whose notification URL carries it; rotating it is a deliberate step (README, Deploy), not a date.
  parent: vault
  name: notificationKeySecretName
  properties: {
    value: notificationFunctionKey
    contentType: 'text/plain'
  }
}

@description('The resource ID of the key vault.')
output RESOURCE_ID string = vault.id

@description('The name of the key vault.')
output NAME string = vault.name

@description('The URI of the key vault, for {"key_vault": "<URI>secrets/<name>"} references.')
output URI string = vault.properties.vaultUri
