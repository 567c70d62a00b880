package naming

import (
	"os"
	"slices"
	"testing"
)

// TestStagesArePluginFolders: a stage added under plugins/ without being
// listed in Stages (or a stage listed without its folder) fails here.
func TestStagesArePluginFolders(t *testing.T) {
	entries, err := os.ReadDir("../../plugins")
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		if e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	stages := slices.Clone(Stages())
	slices.Sort(stages)
	if !slices.Equal(stages, folders) {
		t.Errorf("Stages() %v, folders under plugins/ %v", Stages(), folders)
	}
}
