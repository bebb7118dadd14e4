// The connector's storage account: the Functions host's own storage, the connector's data (extracts
// container, lock leases, tables, run queue) and the Flex Consumption deployment container. Shared keys
// are off: the app, the host and the deployment use the managed identity.
// https://learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent
metadata description = 'Storage account with identity-based access only, holding the connector data.'

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Optional. Location of the storage account.')
param location string = resourceGroup().location

@description('Optional. Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Required. Blob container for the runs\' output (extracts).')
param extractsContainerName string

@description('Required. Blob container for the per-task lock leases.')
param leasesContainerName string

@description('Required. Blob container Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('Required. Names of the tables (configuration, run history, task state).')
param tableNames array

@description('Required. Name of the run-request queue; its poison queue is created too.')
param runsQueueName string

@description('Optional. Days after which run output in the extracts container is deleted, a backstop to the connector\'s own run retention.')
@minValue(1)
param extractsRetentionDays int = 90

@description('Optional. Days deleted blobs and containers can be restored.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

@description('Optional. Tags of the resource.')
param tags object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Default action Allow: the Flex Consumption app has no virtual network in this template (no fixed outbound addresses); shared keys are off, so every request needs Microsoft Entra ID and an RBAC role.
  // checkov:skip=CKV_AZURE_206: Zone-redundant (ZRS) by default; geo-replication (GRS, GZRS) is the skuName parameter's choice: the output can be read again from Graph with a full run.
  // checkov:skip=CKV_AZURE_59: Public network access stays on for the same reason; blob public (anonymous) access is off (allowBlobPublicAccess false).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

var containerNames = [
  extractsContainerName
  leasesContainerName
  deploymentContainerName
]
var queueNames = [
  runsQueueName
  '${runsQueueName}-poison'
]

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// A backstop to the connector's own retention: old run output in the extracts container is deleted.
// latest.json is rewritten by every run, so a task that runs keeps its current view.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-old-extracts'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${extractsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: extractsRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

@description('The resource ID of the storage account.')
output RESOURCE_ID string = storage.id

@description('The name of the storage account.')
output NAME string = storage.name

@description('The blob service endpoint.')
output BLOB_ENDPOINT string = storage.properties.primaryEndpoints.blob

@description('The queue service endpoint.')
output QUEUE_ENDPOINT string = storage.properties.primaryEndpoints.queue

@description('The table service endpoint.')
output TABLE_ENDPOINT string = storage.properties.primaryEndpoints.table
