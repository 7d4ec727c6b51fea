namespace VmState.Formats.Migration;

/// <summary>The VM description entry of one device section, keyed by (idstr, instance id).</summary>
internal sealed record DeviceDescription(string Name, int InstanceId, VmsdDescription Vmsd);
