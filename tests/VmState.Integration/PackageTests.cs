using System.IO.Compression;
using System.Reflection;
using System.Xml.Linq;
using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// The VmState NuGet package as a user gets it: packed from src/VmState into a local folder feed, referenced by a
/// fresh console project outside the repository (so none of the repo's build settings help it), and run against a
/// migration stream of the fixture guest.
/// </summary>
[Collection(ScriptCollection.Name)]
public sealed class PackageTests(ScriptGuest fixture)
{
    private static readonly TimeSpan s_buildTimeout = TimeSpan.FromMinutes(10);

    /// <summary>The configuration these tests were built with; the package is packed with the same one.</summary>
    private static string Configuration =>
        typeof(PackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    [Fact]
    public void APackedConsumerListsTheGuestsProcessesAndFindsTheMarker()
    {
        DirectoryInfo work = Directory.CreateTempSubdirectory("vmstate-package-");
        try
        {
            string feed = Path.Combine(work.FullName, "feed");
            HostCommand.Result pack = DotnetCommand.Run(RepoPaths.Root, ["pack", "src/VmState/VmState.csproj", "-c", Configuration, "-o", feed], s_buildTimeout);
            Assert.True(pack.ExitCode == 0, pack.ToString());

            // The version comes from Directory.Build.props, the one place it is set; the library assembly has it too.
            string version = typeof(Vm).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
            string nupkg = Path.Combine(feed, $"VmState.{version}.nupkg");
            Assert.True(File.Exists(nupkg), $"no {nupkg}; the feed has {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
            using (ZipArchive zip = ZipFile.OpenRead(nupkg))
            {
                string[] entries = [.. zip.Entries.Select(e => e.FullName)];
                Assert.Contains("lib/net10.0/VmState.Core.dll", entries);
                Assert.Contains("lib/net10.0/VmState.Core.xml", entries);
                Assert.Contains("PACKAGE.md", entries);
            }

            using (ZipArchive symbols = ZipFile.OpenRead(Path.Combine(feed, $"VmState.{version}.snupkg")))
            {
                Assert.Contains(symbols.Entries, e => e.FullName == "lib/net10.0/VmState.Core.pdb");
            }

            string consumer = WriteConsumer(work.FullName, feed, version);
            var environment = new Dictionary<string, string>
            {
                // A packages folder of its own: the user's cache may hold an older VmState of the same version.
                ["NUGET_PACKAGES"] = Path.Combine(work.FullName, "packages"),
            };
            string marker = MarkerComm();
            HostCommand.Result run = DotnetCommand.Run(consumer, ["run", "-c", "Release", "--", fixture.StreamPath, marker], s_buildTimeout, environment);
            Assert.True(run.ExitCode == 0, run.ToString());

            // What the library in this test host reads from the same stream, and what the guest said about itself.
            using Vm vm = Vm.Open(fixture.StreamPath);
            string[] lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Contains($"processes {vm.Linux.Processes().Count}", lines);
            Assert.Equal([$"{marker} {fixture.Truth.Marker!.Pid}"], lines.Where(l => l.StartsWith(marker + " ", StringComparison.Ordinal)));
            Assert.Contains($"library VmState.Core {version}", lines);

            // The reference was resolved from the packed feed, not from a project.
            Assert.True(File.Exists(Path.Combine(work.FullName, "packages", "vmstate", version, "lib", "net10.0", "VmState.Core.dll")));
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private string MarkerComm() => fixture.Truth.Processes.Single(p => p.Pid == fixture.Truth.Marker!.Pid).Comm;

    /// <summary>
    /// Writes the console project by hand (no template needed offline) with a nuget.config whose sources are the
    /// local feed plus the sources the user-level NuGet.Config gives (where this repo restores from), VmState
    /// mapped to the local feed only so a same-named package elsewhere is never taken.
    /// </summary>
    private static string WriteConsumer(string work, string feed, string version)
    {
        string dir = Path.Combine(work, "consumer");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="VmState" Version="[{version}]" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(dir, "Program.cs"), """
            using System.Reflection;
            using VmState;
            using VmState.Linux;

            using Vm vm = Vm.Open(args[0]);
            IReadOnlyList<LinuxProcess> processes = vm.Linux.Processes();
            Console.WriteLine($"processes {processes.Count}");
            foreach (LinuxProcess p in processes.Where(p => p.Comm == args[1]))
            {
                Console.WriteLine($"{p.Comm} {p.Pid}");
            }

            Assembly library = typeof(Vm).Assembly;
            Console.WriteLine($"library {library.GetName().Name} {library.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0]}");
            """);

        var sources = new XElement("packageSources", new XElement("clear"), new XElement("add", new XAttribute("key", "vmstate-local"), new XAttribute("value", feed)));
        var mapping = new XElement("packageSourceMapping",
            new XElement("packageSource", new XAttribute("key", "vmstate-local"), new XElement("package", new XAttribute("pattern", "VmState"))));
        string userConfig = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "NuGet", "NuGet.Config");
        if (File.Exists(userConfig))
        {
            foreach (XElement add in XDocument.Load(userConfig).Descendants("packageSources").Elements("add"))
            {
                sources.Add(new XElement(add));
                mapping.Add(new XElement("packageSource", new XAttribute("key", (string)add.Attribute("key")!), new XElement("package", new XAttribute("pattern", "*"))));
            }
        }

        new XDocument(new XElement("configuration", sources, mapping)).Save(Path.Combine(dir, "nuget.config"));
        return dir;
    }
}
