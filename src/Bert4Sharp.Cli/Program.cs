using System.CommandLine;
using Bert4Sharp.Cli;

// b4s: the Bert4Sharp command-line tool. Each command lives in Commands/; all share --json and the
// error convention (one line on stderr, non-zero exit code).
var root = new RootCommand("Bert4Sharp: Transformer checkpoints, models and tools for .NET");
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(ConvertCommand.Create());
root.Subcommands.Add(DoctorCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(VocabCommand.Create());
root.Subcommands.Add(ModelCommands.Encode());
root.Subcommands.Add(ModelCommands.FillMask());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(QuickstartCommand.Create());
root.Subcommands.Add(TrainCommands.Pretrain());
root.Subcommands.Add(TrainCommands.Train());
root.Subcommands.Add(ClueCommand.Create());
root.Subcommands.Add(CompressCommand.Create());
root.Subcommands.Add(EmbedCommand.Create());
root.Subcommands.Add(SearchCommands.Index());
root.Subcommands.Add(SearchCommands.Search());
root.Subcommands.Add(StsCommand.Create());
root.Subcommands.Add(EmbedCommand.Whiten());
root.Subcommands.Add(ExportCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(DownloadCommand.Create());
root.Subcommands.Add(ExplainCommand.Create());
root.Subcommands.Add(DiffusionCommand.Create());
return CliErrors.Run(() => root.Parse(args).Invoke());
