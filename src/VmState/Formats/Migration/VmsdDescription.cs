namespace VmState.Formats.Migration;

/// <summary>A VMStateDescription as the trailing JSON VM description describes it: name, version, fields, subsections.</summary>
internal sealed record VmsdDescription(string VmsdName, int Version, IReadOnlyList<FieldDescription> Fields, IReadOnlyList<VmsdDescription> Subsections);
