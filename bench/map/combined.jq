# The benchmark mapping as one jq program per item, for the jq and jaq CLIs: the same input shape
# (Properties parsed, __ fields filled) and the same expressions, one entity per output line.
(.Properties | fromjson) as $p
| {Identifier, Type: .TypeName, Properties: $p,
   __ExtraContext: {AccountId: "123456789012", AccountName: null, Region: "us-east-1"},
   __AccountId: "123456789012", __Region: "us-east-1", __Kind: .TypeName}
| if .Type == "AWS::S3::Bucket" then
    {identifier: .Identifier, blueprint: "awsS3Bucket", title: .Identifier,
     properties: {arn: .Properties.Arn, region: .__Region,
                  versioning: .Properties.VersioningConfiguration.Status,
                  encryption: .Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm,
                  tags: (.Properties.Tags // [] | map({(.Key): .Value}) | add)},
     relations: {account: .__AccountId}}
  elif .Type == "AWS::EC2::Instance" then
    {identifier: .Identifier, blueprint: "awsEc2Instance",
     title: (.Properties.Tags // [] | map(select(.Key == "Name")) | .[0].Value // null),
     properties: {instanceType: .Properties.InstanceType, privateIp: .Properties.PrivateIpAddress,
                  availabilityZone: .Properties.AvailabilityZone,
                  tags: (.Properties.Tags // [] | map({(.Key): .Value}) | add)},
     relations: {account: .__AccountId, subnet: .Properties.SubnetId}}
  elif .Type == "AWS::Lambda::Function" then
    {identifier: .Properties.Arn, blueprint: "awsLambdaFunction", title: .Properties.FunctionName,
     properties: {runtime: .Properties.Runtime, memorySize: .Properties.MemorySize,
                  architecture: .Properties.Architectures[0],
                  tags: (.Properties.Tags // [] | map({(.Key): .Value}) | add)},
     relations: {account: .__AccountId, role: .Properties.Role}}
  else empty end
