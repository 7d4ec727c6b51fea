namespace VmState.Integration;

/// <summary>The tests that run <c>dotnet</c> builds against <see cref="ScriptGuest"/>, one at a time.</summary>
[CollectionDefinition(Name)]
public sealed class ScriptCollection : ICollectionFixture<ScriptGuest>
{
    public const string Name = "scripts";
}
