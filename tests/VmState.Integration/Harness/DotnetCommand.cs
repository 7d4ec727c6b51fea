namespace VmState.Integration.Harness;

/// <summary>Runs the <c>dotnet</c> host (pack, restore, run) as a user would, and times it.</summary>
public static class DotnetCommand
{
    /// <summary>Runs <c>dotnet ARGS</c> in <paramref name="workingDirectory"/>; kills it after <paramref name="timeout"/>.</summary>
    public static HostCommand.Result Run(string workingDirectory, IEnumerable<string> args, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var env = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
        {
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
            ["DOTNET_NOLOGO"] = "1",
        };
        return HostCommand.Run("dotnet", args, workingDirectory, timeout, env);
    }
}
